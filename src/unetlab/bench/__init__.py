"""The top floor: `bench` (every accelerator side by side: speed, FLOPs, memory, quality; every row a `Recipe`),
`tune` (the fastest recipe meeting a quality budget), their shared timing (`timing.time_rounds`), workloads and
reports, and the shipped models' quality bars."""

from .harness import bench
from .tuner import tune

__all__ = ["bench", "tune"]
