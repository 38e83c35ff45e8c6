"""TaylorSeer forecasting (Liu et al., arXiv 2503.06923): F(s) ≈ Σ_{i≤O} Δ^i F · Π_{j<i} (s − s_j), Δ^i F the i-th
backward divided difference over the last full steps s_0 > s_1 > …
(uniform spacing N, k = s − s_0: F + ∇F·k/N + ∇²F·k(k+N)/2N²).

This is the order-O Taylor expansion around the last full step with its derivatives estimated from backward
differences to order O (Newton's backward form): exact for a feature that is a polynomial of degree ≤ O in the
step index, for any spacing of the full steps. `taylor1` is TaylorSeer's first order exactly; `taylor2` keeps
the second difference's contribution to the first derivative (TaylorSeer's recursive factors drop it). With a
single full step stored the forecast is a copy; `taylor2` with two is `taylor1`.
"""

from __future__ import annotations

import torch

REUSE = {"copy": 0, "taylor1": 1, "taylor2": 2}  # reuse mode -> order O of the forecast


def order(reuse) -> int:
    """The forecast order of a `reuse` mode; a one-line error naming the valid modes."""
    if not isinstance(reuse, str) or reuse not in REUSE:
        raise ValueError(f"reuse: expected one of {', '.join(repr(r) for r in REUSE)}, got {reuse!r}")
    return REUSE[reuse]


def _zip_map(fn, *outs):
    """`fn` applied to the tensors at the same place of (nested tuples of) outputs; non-tensors from the first."""
    first = outs[0]
    if torch.is_tensor(first):
        return fn(*outs)
    if isinstance(first, (tuple, list)):
        return type(first)(_zip_map(fn, *parts) for parts in zip(*outs))
    return first


def differences(F, lower, h) -> list:
    """The divided differences with a new full step's `F`, from the `lower` ones Δ^0 F … Δ^{n-1} F and the step's
    `spacings` h (n of each; Python ints, or the same as 0-d int64 tensors in traced code: the same bits):
    F[s, s_0, …, s_{i-1}] = (F[s, s_0, …, s_{i-2}] − F[s_0, …, s_{i-1}]) / h_i."""
    new = [F]
    for d, hi in zip(lower, h):
        new.append(_zip_map(lambda a, b, hi=hi: (a - b) / hi, new[-1], d))
    return new


class Forecast:
    """The last full steps' feature (any nested tuple of tensors) and its divided differences, for one call slot.

    `diffs[i]` is Δ^i F = F[s_0, …, s_i] at `steps` = (s_0, s_1, …), newest first."""

    def __init__(self, order: int):
        self.order = order
        self.steps: list[int] = []
        self.diffs: list = []

    @property
    def copies(self) -> bool:
        """Whether the forecast is a copy of the last full step's feature (one full step stored)."""
        return len(self.diffs) == 1

    def update(self, F, s: int) -> None:
        """Full step `s` (later than the stored ones) computed `F`."""
        h = self.spacings(s)
        self.diffs = differences(F, self.diffs[: len(h)], h)
        self.advance(s)

    def spacings(self, s: int) -> list[int]:
        """h_i = s − s_{i-1}, i = 1 … min(O, steps stored): the divisors of the differences full step `s` adds."""
        return [s - sj for sj in self.steps[: self.order]]

    def advance(self, s: int) -> None:
        """Record full step `s` (its differences taken: `differences`)."""
        self.steps = [s, *self.steps][: self.order + 1]

    def at(self, s: int):
        """The forecast of the feature at step `s` (after the full steps), in fresh tensors: a copy when one full
        step is stored."""
        if self.copies:
            return _zip_map(torch.clone, self.diffs[0])
        out, w = self.diffs[0], 1
        for i in range(1, len(self.diffs)):
            w *= s - self.steps[i - 1]
            out = _zip_map(lambda o, d, w=w: o + w * d, out, self.diffs[i])
        return out
