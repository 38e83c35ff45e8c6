"""A launch that asked for several processes but got one: accelerate 1.x's `accelerate launch --cpu
--num_processes N` starts a single process (it sets MASTER_ADDR/MASTER_PORT for N > 1 but no RANK/WORLD_SIZE)."""

from __future__ import annotations

import os
import sys

HINT = (
    "accelerate launch started one process (with --cpu it runs one whatever --num_processes says); for several "
    "CPU processes use `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N` (docs/scale-out.md)"
)


def single_process_launch() -> bool:
    """True when accelerate's single-process launcher ran us although more processes or machines were asked for."""
    env = os.environ
    return "ACCELERATE_MIXED_PRECISION" in env and "MASTER_PORT" in env and "WORLD_SIZE" not in env


def end_processes() -> None:
    """At exit, destroy the process group the commands under `accelerate launch` ran in (accelerate's
    `PartialState.destroy_process_group`): a gloo process that exits with its group alive can abort (SIGABRT,
    "terminate called without an active exception") while the interpreter shuts down."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()
