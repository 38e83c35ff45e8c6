"""Guidance reuse: the guidance rows of the UNet's batch from its conditional rows and a reused difference.

With classifier-free guidance the UNet predicts ε_u and ε_c of one sample in one batch and the pipeline forms
ε = ε_u + w (ε_c − ε_u). The difference Δ = ε_c − ε_u changes slowly across steps (the reuse of FasterCache's
CFG-Cache, Lv et al. arXiv 2410.19355, without its frequency split): every `interval` steps the whole guidance batch
runs and Δ is stored (per call slot); at the other steps only the conditional rows run and the rows returned for the
unconditional chunk are ε̂_u = ε_c − Δ̂, Δ̂ the stored Δ copied (`reuse="copy"`) or forecast from the last full
steps (`"taylor1"`, `"taylor2"`: `forecast.py`). The pipeline's call and arithmetic are unchanged: it forms
ε̂_u + w (ε_c − ε̂_u) = ε_c + (w − 1) Δ̂. Layouts with several guidance chunks (InstructPix2Pix, PAG:
`guidance_layout.py`) keep one difference per chunk. `stop_after=f` drops guidance from step f·N on (N the steps the
call runs), as T-GATE does after its gate step: only the conditional rows run and every chunk returned equals them,
so the pipeline's guidance gives ε_c.

A call without a guidance batch is refused at the first UNet call of a pipeline call; later in the call (a CFG
cut-off callback drops the batch) such a call runs as it is. Stacked on branch caching or clockwork with the
identity adaptor (applied before it), the whole guidance batch runs as one call at a full step, which is also every
step where the reuse underneath runs full, and a cheap step's conditional rows are offered to it as a row view
(`row_view`): it hands them those rows of the deep features its full step stored. Stacked on encoder propagation or
the learned clockwork adaptor (whose cheap steps keep state per batch), each guidance chunk is its own UNet call
underneath at a full step, the conditional chunk first, so their caches (kept per call slot) hold one chunk's rows
and a cheap step's conditional rows reuse the conditional slot's cache; a pipeline calling the UNet more than once
per step is refused there. After `stop_after`, the conditional rows run as a call of their own underneath.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..errors import UnsupportedPipelineError
from ..patching import claims, owner
from .config import AccelConfig
from .forecast import Forecast, order
from .guidance_layout import Layout, copies, family, perturbed_layers, recognise, rows, unperturbed
from .handle import Accelerator, Call
from .row_view import RowView, offered

KIND = "guidance_reuse"
UNDER = frozenset({"encoder_propagation", "branch_cache", "clockwork"})  # what it stacks on, applied after them


@dataclass(frozen=True)
class GuidanceReuseConfig(AccelConfig):
    """`interval`: the whole guidance batch runs every `interval` steps (1: every step); `reuse`: "copy", "taylor1"
    or "taylor2" (the difference forecast from the last full steps); `stop_after`: None, or the fraction f of the
    steps run (0 < f <= 1) after which guidance is dropped."""

    kind = KIND
    family = "guidance-reuse"
    interval: int = 2
    reuse: str = "copy"
    stop_after: float | None = None

    def __post_init__(self):
        order(self.reuse)
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"interval: expected an int >= 1 (1 = every step full), got {self.interval!r}")
        f = self.stop_after
        if f is not None and (
            isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 < f <= 1
        ):
            raise ValueError(f"stop_after: expected None or a fraction of the steps in (0, 1], got {f!r}")

    def apply_to(self, target) -> GuidanceReuse:
        return GuidanceReuse(target, self)

    def label(self) -> str:
        """Row name: "guidance reuse N=<interval>", "stop after <f>" when guidance is dropped, and the forecast."""
        stop = f" stop after {self.stop_after}" if self.stop_after is not None else ""
        return f"guidance reuse N={self.interval}{stop}" + (f" {self.reuse}" if self.reuse != "copy" else "")


def _with_sample(out, sample: torch.Tensor):
    """The UNet's output (a tuple or a diffusers output) with `sample` in place of its prediction."""
    return (sample, *out[1:]) if isinstance(out, tuple) else dataclasses.replace(out, sample=sample)


class GuidanceReuse(Accelerator):
    """Handle of an applied guidance reuse; `calls` lists (step, whole guidance batch run?) of the current run."""

    kind = KIND

    def install(self) -> None:
        if self.pipe is None:
            raise UnsupportedPipelineError(
                "target: guidance_reuse needs the pipeline (its guidance layout), got a bare "
                f"{type(self.unet).__name__}"
            )
        if "encoder_hidden_states" not in self._signature.parameters:
            raise UnsupportedPipelineError(
                f"target: {type(self.unet).__name__} takes no conditioning, so its pipeline has no "
                "guidance batch to reuse"
            )
        from diffusers import StableDiffusionPanoramaPipeline, StableDiffusionSAGPipeline

        for cls, why in (
            (
                StableDiffusionSAGPipeline,
                "reads the attention map of both guidance halves from the UNet, which a cheap step does not compute",
            ),
            (
                StableDiffusionPanoramaPipeline,
                "guides while its do_classifier_free_guidance says False, "
                "and interleaves the guidance rows of its views",
            ),
        ):
            if isinstance(self.pipe, cls):
                raise UnsupportedPipelineError(f"target: {cls.__name__} {why}")
        self._family = family(self.pipe)
        under = sorted(claims(self.unet) & UNDER)
        if under and self._family == "pag":
            raise RuntimeError(
                f"guidance_reuse: {under[0]} is applied and PAG's processors split the batch "
                "themselves, so the guidance chunks cannot run as separate calls under it; apply "
                "guidance_reuse alone on a PAG pipeline"
            )
        self._order = order(self.config.reuse)

    def clear(self) -> None:
        self._forecast: dict[int, Forecast] = {}  # slot -> the differences of its last full steps
        self._batch: int | None = None  # the guidance batch's rows, from the first UNet call of the run
        self._perturbed: list = []

    @property
    def _rows(self) -> int:
        """The guidance batch's rows, known once the run's first UNet call was recognised (`_guidance`)."""
        if self._batch is None:
            raise RuntimeError("guidance_reuse: the guidance batch is unknown before the run's first UNet call")
        return self._batch

    def start(self, run) -> None:
        if self.config.stop_after is not None and run.num_steps is None:
            raise ValueError("stop_after: this call's number of steps is unknown (its scheduler has no timesteps)")
        self._under = [owner(self.unet, kind) for kind in sorted(claims(self.unet) & UNDER)]
        self._view = bool(self._under) and all(h.takes_rows for h in self._under)
        self._split = bool(self._under) and not self._view

    # ------------------------------------------------------------------ the patched call
    def forward(self, original, call: Call, args, kwargs):
        if self._split and call.slot:
            raise RuntimeError(
                f"guidance_reuse: {type(self.pipe).__name__} calls the UNet more than once per step, "
                f"and stacked on {', '.join(sorted(claims(self.unet) & UNDER))} the guidance chunks of "
                "its calls would share their call slots; apply guidance_reuse alone"
            )
        layout = self._guidance(call)
        if layout is None:
            self.calls.append((call.step, True))
            return original(*args, **kwargs)
        stop = self.config.stop_after
        if stop is not None and call.step >= stop * self.current_run.steps():
            self.calls.append((call.step, False))
            out = self._chunk(original, call, layout, layout.cond)
            return _with_sample(out, torch.cat([out[0]] * layout.chunks))
        slot = call.slot
        full = (
            call.step % self.config.interval == 0
            or not call.fresh
            or slot not in self._forecast
            or (self._view and any(h.wants_full(call.step) for h in self._under))
        )
        self.calls.append((call.step, full))
        if not full:
            with offered(self._cond_view(call, layout) if self._view else None):
                out = self._chunk(original, call, layout, layout.cond)
            return _with_sample(out, self._assemble(layout, out[0], self._forecast[slot].at(call.step)))
        out = self._whole(original, call, layout) if self._split else original(*args, **kwargs)
        if self.config.interval > 1:
            eps = out[0].chunk(layout.chunks)
            delta = tuple(eps[layout.cond] - e for i, e in enumerate(eps) if i != layout.cond)
            if not call.fresh or slot not in self._forecast:
                self._forecast[slot] = Forecast(self._order)
            self._forecast[slot].update(delta, call.step)
        self.mark_full(call)
        return out

    def _guidance(self, call: Call) -> Layout | None:
        """The call's guidance layout, or None for a call without a guidance batch after the run's first call (the
        first is refused)."""
        layout, guided = recognise(self.pipe, self._family)
        sample = call.bound["sample"]
        n = sample.shape[0]
        if self._batch is not None:
            return layout if guided is not False and n == self._batch else None
        if guided is None and n % layout.chunks == 0:
            guided = copies(sample, layout, min(sample.shape[1], self.unet.config.out_channels))
        if not guided or n % layout.chunks:
            raise ValueError(
                f"guidance_reuse: this {type(self.pipe).__name__} call has no guidance batch (the "
                f"UNet's {n} rows are not {layout.chunks} guidance copies of the sample): nothing to "
                "reuse; call it with guidance (e.g. guidance_scale > 1) or remove the handle"
            )
        self._batch = n
        if layout.name.startswith("pag"):
            self._perturbed = perturbed_layers(self.pipe, self.unet)
        return layout

    def _chunk(self, original, call: Call, layout: Layout, index: int):
        """The UNet on the rows of chunk `index` alone."""
        with unperturbed(self._perturbed):
            return original(**rows(call.bound, self._rows, layout, index))

    def _cond_view(self, call: Call, layout: Layout) -> RowView:
        """The conditional chunk's rows of the call's guidance batch, for the handle underneath."""
        size = self._rows // layout.chunks
        return RowView(slice(layout.cond * size, (layout.cond + 1) * size), self._rows, call.bound)

    def _whole(self, original, call: Call, layout: Layout):
        """The whole guidance batch as one call per chunk, the conditional chunk first (stacked)."""
        first = [layout.cond, *(i for i in range(layout.chunks) if i != layout.cond)]
        outs = {i: self._chunk(original, call, layout, i) for i in first}
        return _with_sample(outs[layout.cond], torch.cat([outs[i][0] for i in range(layout.chunks)]))

    @staticmethod
    def _assemble(layout: Layout, eps_c: torch.Tensor, delta: tuple) -> torch.Tensor:
        """[ε_c − Δ̂_i for each guidance chunk i, ε_c for the conditional one], in the layout's order."""
        others = iter(delta)
        return torch.cat([eps_c if i == layout.cond else eps_c - next(others) for i in range(layout.chunks)])


def guidance_reuse(target, interval: int = 2, reuse: str = "copy", stop_after: float | None = None) -> GuidanceReuse:
    """Apply guidance reuse to a diffusers pipeline; returns a handle (context manager, `.remove()`)."""
    return GuidanceReuse(target, GuidanceReuseConfig(interval=interval, reuse=reuse, stop_after=stop_after))
