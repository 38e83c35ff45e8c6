"""What branch caching and clockwork share: full UNet at full steps, the partial UNet in between.

At a full step the model's own forward runs and the deep path's outputs are stored (per call slot, with the
inputs they were computed from); at any other step the deep path returns copies of what its slot stored
(`reuse="copy"`) or their forecast from the slot's last full steps (`"taylor1"`, `"taylor2"`: `forecast.py`)
and only the shallow levels run. A call whose inputs differ from its slot's last full call (batch or conditioning
changed) runs full. Steps come from `handle.Accelerator` (the steps the pipeline call runs, Heun's repeated
timesteps included); on a bare UNet each call is one step and `reset()` starts over. A cheap call on some rows of
the batch (guidance reuse stacked above: `row_view`) gets those rows of what its slot stored.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..patching import ForwardPatch
from .forecast import Forecast, differences, order
from .handle import Accelerator, Call
from .row_view import RowView
from .side_state import holders, map_tensors, restore, snapshot


class DeepPath:
    """Makes the deep path (`unet.partial.deep_modules` or `deep_layer_modules`) reusable.

    While `reuse` is off each module runs and its output (and its attention processors' kept state) is stored
    under `slot`; while it is on the module returns a copy of its slot's stored output without running, or with
    `order` > 0 the forecast at `step` from the outputs of its slot's last full steps (`restart`: forget them).
    With `order` > 0 the handle calls `prepare()` before and `settle()` after each UNet call.
    """

    def __init__(self, modules: list[tuple[str, torch.nn.Module]], name: str, order: int = 0):
        self.modules = modules
        self.order = order
        self.reuse = self.restart = False
        self.slot = self.step = 0
        self.view: RowView | None = None  # while reusing: the rows of the stored batch this call is on
        self._store: dict[int, dict[str, Any]] = {}
        self._ready: dict[str, Any] = {}  # key -> its forecast at this cheap step
        self._pending: dict[str, tuple] = {}  # key -> (its Forecast, its differences used, the spacings) until it runs
        self._prepared: dict[str, tuple] = {}  # what `_pending` held before the call
        self._holders = {key: holders([m]) for key, m in modules}
        self._patches = [ForwardPatch(m, name, functools.partial(self._forward, key)) for key, m in modules]

    @property
    def feature(self) -> torch.Tensor | None:
        """The stored feature entering the shallow up layers (the last deep module's output) of this slot."""
        entry = self._store.get(self.slot, {}).get(self.modules[-1][0])
        if entry is None:
            return None
        out = entry[0].diffs[0] if self.order else entry[0]
        return out[0] if isinstance(out, tuple) else out

    def clear(self) -> None:
        self._store.clear()
        self._ready, self._pending, self._prepared = {}, {}, {}

    def prepare(self) -> None:
        """Outside any graph, before a UNet call (`reuse`, `slot`, `step`, `restart` set): the forecasts of the
        modules to reuse, and for those to run their Forecast, the differences their new ones are taken from and
        the spacings dividing them as 0-d int64 tensors, so that no step number reaches torch.compile's traced
        code (dynamo would guard on it and compile again at every step)."""
        store = self._store.get(self.slot, {})
        reused = store if self.reuse else {}
        self._ready = {key: entry[0].at(self.step) for key, entry in reused.items()}
        if self.view is not None:
            self._ready = {key: map_tensors(out, self.view.cut) for key, out in self._ready.items()}
        self._pending = {}
        for key, _ in self.modules:
            if key not in reused:
                fc = store[key][0] if key in store and not self.restart else Forecast(self.order)
                h = fc.spacings(self.step)
                self._pending[key] = (fc, fc.diffs[: len(h)], [torch.tensor(hi) for hi in h])
        self._prepared = dict(self._pending)

    def settle(self) -> None:
        """After a UNet call: the full step is recorded in the Forecasts of the modules that ran."""
        for key, (fc, *_) in self._prepared.items():
            if key not in self._pending:
                fc.advance(self.step)
        self._ready, self._pending, self._prepared = {}, {}, {}

    def _forward(self, key: str, original, *args, **kwargs):
        entry = self._store.get(self.slot, {}).get(key) if self.reuse else None
        if entry is not None:
            restore(entry[1])
            if self.order:
                return self._ready.pop(key)
            return self._cut(entry[0])
        out = original(*args, **kwargs)
        store = self._store.setdefault(self.slot, {})
        kept = out
        if self.order:
            kept, lower, h = self._pending.pop(key)
            kept.diffs = differences(out, lower, h)
        store[key] = (kept, snapshot(self._holders[key]))
        return out

    def _cut(self, out):
        """A copy of a stored output, cut to the rows of `view` (forward may add in place: T2I-Adapter)."""
        return map_tensors(out, torch.clone if self.view is None else self.view.cut)

    def remove(self) -> None:
        for p in reversed(self._patches):
            p.remove()
        self._patches = []
        self._store.clear()


class DeepReuse(Accelerator):
    """Removable patch running the full UNet where `config.is_full(step)` (or the call is not fresh) and the
    partial UNet elsewhere. `calls` lists (step, full?) for every UNet call of the current run."""

    def install(self) -> None:
        self.deep = self._add(
            DeepPath(self.config.deep(self.unet), name=f"unetlab.{self.kind}.deep", order=order(self.config.reuse))
        )

    def start(self, run) -> None:
        if run.num_steps is not None:
            self.config.check_steps(run.num_steps)

    def clear(self) -> None:
        if "deep" in self.__dict__:
            self.deep.clear()

    @property
    def takes_rows(self) -> bool:
        """The identity deep path keeps nothing at a cheap step, so a cheap step may run on some rows; the learned
        clockwork adaptor chains its outputs from step to step (`adaptor_path`) and does not."""
        return type(self.deep) is DeepPath

    def wants_full(self, step: int) -> bool:
        return self.config.is_full(step)

    def forward(self, original, call: Call, args, kwargs):
        full = self.config.is_full(call.step) or not call.fresh
        if full and call.view is not None:
            raise RuntimeError(
                f"{self.kind}: step {call.step} must run full, and this call holds only some rows of the batch"
            )
        if full:
            self.mark_full(call)
        self.calls.append((call.step, full))
        self.deep.reuse, self.deep.slot, self.deep.step = not full, call.slot, call.step
        self.deep.view = call.view
        self.deep.restart = not call.fresh
        if self.deep.order:
            self.deep.prepare()
        try:
            out = original(*args, **kwargs)
        finally:
            self.deep.reuse, self.deep.view = False, None
        if self.deep.order:
            self.deep.settle()
        return out
