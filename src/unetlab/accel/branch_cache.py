"""Branch caching (DeepCache, Ma et al. 2023, Sec. 3.2-3.3), block-level, on the partial UNet.

Every `interval` steps (or at an explicit list of full steps) the whole UNet runs and the feature
entering the last `branch + 1` up blocks is cached; at the other steps only the stem,
`down_blocks[:branch + 1]`, the last `branch + 1` up blocks and the head run, on the cached feature.
Steps are counted from the pipeline's scheduler, so Heun's repeated timesteps do not confuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..patching import resolve
from ..unet.partial import num_levels
from .deep_reuse import DeepReuseHandle


@dataclass(frozen=True)
class BranchCacheConfig:
    """`interval`: full step every `interval` steps (uniform schedule); `branch`: 0 = shallowest level only;
    `schedule`: "uniform" or the explicit 0-based indices of the full steps (then `interval` is unused)."""

    interval: int = 3
    branch: int = 0
    schedule: str | tuple[int, ...] = "uniform"

    def __post_init__(self):
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"interval: expected an int >= 1 (1 = every step full), got {self.interval!r}")
        if isinstance(self.branch, bool) or not isinstance(self.branch, int) or self.branch < 0:
            raise ValueError(f"branch: expected an int >= 0 (0 = only the shallowest level runs), got {self.branch!r}")
        if isinstance(self.schedule, str):
            if self.schedule != "uniform":
                raise ValueError(f"schedule: expected 'uniform' or a list of full-step indices, got {self.schedule!r}")
            return
        steps = tuple(self.schedule) if isinstance(self.schedule, (list, tuple)) else None
        if (not steps or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
                or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:]))):
            raise ValueError("schedule: expected 'uniform' or a strictly increasing list of int step indices "
                             f"starting with 0, got {self.schedule!r}")
        object.__setattr__(self, "schedule", steps)

    def is_full(self, step: int) -> bool:
        """Whether sampling step `step` (0-based) runs the whole UNet."""
        if self.schedule == "uniform":
            return step % self.interval == 0
        return step in self.schedule

    def check_steps(self, num_steps: int) -> None:
        """Raise when an explicit schedule names a step the pipeline call does not have."""
        if self.schedule != "uniform" and self.schedule[-1] >= num_steps:
            raise ValueError(f"schedule: full step {self.schedule[-1]} is out of range for a call with "
                             f"{num_steps} steps (valid: 0 to {num_steps - 1})")


def branch_cache(target, interval: int = 3, branch: int = 0, schedule="uniform") -> DeepReuseHandle:
    """Apply branch caching to a diffusers pipeline or bare UNet; returns a handle (context manager, `.remove()`)."""
    cfg = BranchCacheConfig(interval=interval, branch=branch, schedule=schedule)
    n = num_levels(resolve(target)[1])
    if cfg.branch > n - 2:
        raise ValueError(f"branch: expected 0 to {n - 2} for this {n}-level UNet, got {cfg.branch}")
    handle = DeepReuseHandle(target, "branch_cache", levels=cfg.branch + 1,
                             is_full=cfg.is_full, check_steps=cfg.check_steps)
    handle.config = cfg
    return handle
