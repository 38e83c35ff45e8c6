"""A UNet call on some rows of the batch the pipeline passed, offered by a handle stacked above another.

Guidance reuse, stacked on branch caching or clockwork, runs a cheap step on the conditional rows alone. The handle
underneath sees that call with a `RowView`: which rows of the whole batch it holds (`rows`, of `batch`), and the
whole batch's bound arguments (`bound`), so that it judges freshness on the same inputs as at its full steps and
hands the call the stored rows it needs (`cut`). The view reaches only the next handle's call (`take` clears it).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowView:
    rows: slice
    batch: int
    bound: dict

    def cut(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` cut to `rows` if it has `batch` rows (a copy: a forward may add to it in place), else itself."""
        return tensor[self.rows].clone() if tensor.ndim and tensor.shape[0] == self.batch else tensor


_OFFERED: ContextVar[RowView | None] = ContextVar("unetlab_row_view", default=None)


@contextlib.contextmanager
def offered(view: RowView | None):
    """While entered, the next handle's UNet call is on `view`'s rows (None: nothing offered)."""
    token = _OFFERED.set(view)
    try:
        yield
    finally:
        _OFFERED.reset(token)


def take() -> RowView | None:
    """The view offered to this call, if any; later calls inside it see none."""
    view = _OFFERED.get()
    if view is not None:
        _OFFERED.set(None)
    return view
