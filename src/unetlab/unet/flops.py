"""FLOP counting with `torch.utils.flop_counter`, overall and per submodule."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """Run `fn()` under a FLOP counter; return (total FLOPs, FLOPs per module path without the root name)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    per_module = {}
    for name, ops in counts.items():
        if name == "Global" or "." not in name:
            continue
        per_module[name.split(".", 1)[1]] = sum(ops.values())
    return total, per_module


def flops_under(per_module: dict[str, int], prefixes: list[str]) -> int:
    """FLOPs of the modules named by `prefixes` (each counted once, nested names not double counted)."""
    return sum(per_module.get(p, 0) for p in prefixes)
