"""Seeded construction: modules built inside `seeded(seed)` get the same initial weights for the same seed, and
the global random state outside is left as it was."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int):
    """Run the block with torch's global generator seeded by `seed`, restoring the previous state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
