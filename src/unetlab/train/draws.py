"""Draws that do not depend on how many processes share a batch: every draw of step s is made for the whole
global batch from one generator seeded by (seed, s), and each process keeps the rows of its own examples.

(torch's CPU generator keeps 32 bits of a seed, so the seed is a 32-bit mix of (seed, s), distinct for every
step of a run.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DRAWS = "draws"  # the batch key under which the loop passes a `StepDraws`
_MIX = 2_654_435_761  # Knuth's multiplicative constant: runs with nearby seeds use far-apart generator seeds


@dataclass(frozen=True)
class StepDraws:
    """Rows `start:stop` of the global batch (`size` examples) of the step whose generator seed is `seed`."""

    seed: int
    start: int
    stop: int
    size: int


def step_draws(seed: int, step: int, start: int, stop: int, size: int) -> StepDraws:
    return StepDraws((seed * _MIX + step) % 2**32, start, stop, size)


class Draws:
    """The random draws of one loss call: rows of the step's global draws when the batch carries a `StepDraws`
    (the loop passes one), else from `generator`. Call the methods in the same order on every process."""

    def __init__(self, batch: dict, generator: torch.Generator):
        self.rows: StepDraws | None = batch.get(DRAWS)
        self.generator = torch.Generator().manual_seed(self.rows.seed) if self.rows else generator

    def _global(self, n: int) -> tuple[int, slice]:
        if self.rows is None:
            return n, slice(0, n)
        if self.rows.stop - self.rows.start != n:
            raise ValueError(f"draws: {n} examples but the batch holds rows {self.rows.start}:{self.rows.stop}")
        return self.rows.size, slice(self.rows.start, self.rows.stop)

    def randint(self, high: int, n: int) -> torch.Tensor:
        size, rows = self._global(n)
        return torch.randint(0, high, (size,), generator=self.generator)[rows]

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        size, rows = self._global(shape[0])
        return torch.randn((size, *shape[1:]), generator=self.generator)[rows]

    def rand(self, n: int) -> torch.Tensor:
        size, rows = self._global(n)
        return torch.rand(size, generator=self.generator)[rows]
