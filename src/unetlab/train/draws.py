"""Per-example random draws: example j of the global batch of step s draws from its own generator seeded by
(seed, s, j), so a run's noise does not depend on how many processes share the batch."""

from __future__ import annotations

import torch

SEEDS = "seeds"  # the batch key under which the loop passes one seed per example


def example_seeds(seed: int, step: int, positions: torch.Tensor) -> torch.Tensor:
    """The seeds of the examples at `positions` of the global batch of `step`."""
    return ((seed * 2**20 + step) * 2**20 + positions) % 2**63


def generators(seeds: torch.Tensor) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]


def randn(shape: tuple[int, ...], gens: list[torch.Generator]) -> torch.Tensor:
    """(len(gens), *shape) standard normals, row i from `gens[i]`."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


def randint(high: int, gens: list[torch.Generator]) -> torch.Tensor:
    return torch.cat([torch.randint(0, high, (1,), generator=g) for g in gens])


def rand(gens: list[torch.Generator]) -> torch.Tensor:
    return torch.cat([torch.rand(1, generator=g) for g in gens])


class Draws:
    """The random draws of one loss call: per example when the batch carries seeds, else from `generator`."""

    def __init__(self, batch: dict, generator: torch.Generator):
        self.gens = generators(batch[SEEDS]) if SEEDS in batch else None
        self.generator = generator

    def randint(self, high: int, n: int) -> torch.Tensor:
        return randint(high, self.gens) if self.gens else torch.randint(0, high, (n,), generator=self.generator)

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return randn(tuple(shape[1:]), self.gens) if self.gens else torch.randn(shape, generator=self.generator)

    def rand(self, n: int) -> torch.Tensor:
        return rand(self.gens) if self.gens else torch.rand(n, generator=self.generator)
