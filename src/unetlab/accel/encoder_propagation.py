"""Encoder propagation (Faster Diffusion, Li et al. 2023, Sec. 3.3): reuse the UNet encoder at non-key steps.

At a key step the whole UNet runs (`encode` + `decode`) and its skips and bottleneck output are cached (per
call slot); at a non-key step only the decoder runs on the slot's cache, with that step's own timestep. Key
steps count the steps the pipeline call runs (img2img's `strength`, SDXL's `denoising_start`/`denoising_end`),
so the first step run is a key step. A call whose batch or step-independent conditioning differs from its
slot's key step runs full and refreshes the cache. `reuse="taylor1"`/`"taylor2"` forecasts the skips and the
bottleneck output at a non-key step from the slot's last key steps (TaylorSeer, `forecast.py`; divided
differences over the actual, non-uniform key-step indices) instead of copying them. In parallel mode the
decoder of a key step and of the following non-key steps (up to the next key step, at most `max_parallel`)
runs as one batch (each copy with its own step's time embedding and, when forecasting, its own step's
forecast, exactly what sequential decoding gives it) and the pipeline's loop receives the precomputed model
outputs at those steps; decoding is sequential while branch caching or clockwork is stacked on it, when the
call's timesteps cannot be matched to the scheduler's without a device sync, and (with a one-line warning)
when an attention processor of the decoder is not known to treat batch elements independently; PAG's
processors, which split the batch into groups, get the copies laid out group by group (`parallel.py`).
Prior noise injection adds `alpha * z_T` to the sample given to each scheduler step whose timestep is below
`injection_threshold`. With a ControlNet, it runs only where the UNet's encoder does. Everything goes through
the normal `pipe(...)` call.

A bare UNet (no scheduler) is driven by the user's loop: calls are counted, `handle.reset()` starts a new
image, decoding is sequential and no noise is injected; the key steps of a named spec need
`num_inference_steps=` at apply time.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import cast

import torch
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel, UNet2DConditionOutput

from ..patching import ForwardPatch, Slots, claims
from ..schedules import KeySteps, Spec, check_spec, resolve
from ..unet import check_supported, decode, encode
from .binding import Binder
from .config import AccelConfig
from .forecast import Forecast, order
from .handle import Accelerator, Call, call_signature, forward_signature
from .parallel import copy_major, grouped_state
from .parallel import plan as parallel_plan
from .side_state import holders, restore, snapshot
from .stacking import SEQUENTIAL

KIND = "encoder_propagation"


@dataclass(frozen=True)
class EncoderPropagationConfig(AccelConfig):
    """`key_steps`: a `schedules` spec; `parallel`: decode non-key steps in one batch with their key step;
    `noise_injection`: prior noise injection strength (None: off) below `injection_threshold`; `max_parallel`:
    most steps decoded in one batch; `num_inference_steps`: a bare UNet's calls per image (named specs);
    `reuse`: "copy", "taylor1" or "taylor2" (the encoder's features forecast from the last key steps)."""

    kind = KIND
    family = "encoder-propagation"
    key_steps: object = "paper"
    parallel: bool = True
    noise_injection: float | None = 0.003
    injection_threshold: float = 500
    max_parallel: int | None = None
    num_inference_steps: int | None = None
    reuse: str = "copy"

    def __post_init__(self):
        order(self.reuse)
        if isinstance(self.key_steps, dict):
            object.__setattr__(
                self,
                "key_steps",
                KeySteps(
                    self.key_steps.get("num_steps"),
                    tuple(self.key_steps.get("key_steps", ())),
                    str(self.key_steps.get("source", "")),
                ),
            )
        elif isinstance(self.key_steps, list):
            object.__setattr__(self, "key_steps", tuple(self.key_steps))
        check_spec(self.key_steps)
        _check_args(
            self.parallel, self.noise_injection, self.injection_threshold, self.max_parallel, self.num_inference_steps
        )

    def apply_to(self, target) -> EncoderPropagation:
        return EncoderPropagation(target, self)

    def check_steps(self, num_steps: int) -> None:
        """Raise when the key steps do not resolve for a call of `num_steps` steps (e.g. a file made for another)."""
        resolve(cast(Spec, self.key_steps), num_steps)  # a spec once __post_init__ has checked it

    def label(self) -> str:
        """Row name: "EP <keys>[, parallel|sequential][, noise a][ reuse]": the mode is named for the paper's keys,
        and for the others when sequential; a key-step file is "derived keys"."""
        keys = self.key_steps
        derived = isinstance(keys, KeySteps) or str(keys).endswith(".json")
        name = "derived keys" if derived else "paper keys" if keys == "paper" else str(keys)
        if keys == "paper" or not self.parallel:
            name += ", parallel" if self.parallel else ", sequential"
        if self.noise_injection is not None:
            name += f", noise {self.noise_injection}"
        tail = self.non_default("key_steps", "parallel", "noise_injection", "reuse", "num_inference_steps")
        return f"EP {name}{tail}" + (f" {self.reuse}" if self.reuse != "copy" else "")


class EncoderPropagation(Accelerator):
    """Handle of an applied encoder propagation; a context manager, removed by `.remove()`."""

    kind = KIND

    def __init__(self, target, config: EncoderPropagationConfig):
        super().__init__(target, config)

    # ----------------------------------------------------------------- lifecycle
    def install(self) -> None:
        check_supported(self.unet)
        cfg = self.config
        if self.pipe is not None and cfg.num_inference_steps is not None:
            raise ValueError(
                "num_inference_steps: only for a bare UNet; a pipeline's step count comes from its "
                "scheduler at each call"
            )
        if self.pipe is None:
            self._bare = _bare_keys(cfg.key_steps, cfg.num_inference_steps)  # (key steps, calls per image)
        self._order = order(cfg.reuse)
        self._output = UNet2DConditionOutput if isinstance(self.unet, UNet2DConditionModel) else UNet2DOutput
        self._encoder = holders(
            [*self.unet.down_blocks, *([self.unet.mid_block] if self.unet.mid_block is not None else [])]
        )
        self._decoder = holders(self.unet.up_blocks)
        self._warned = self._warned_all = False
        controlnet = getattr(self.pipe, "controlnet", None)
        if isinstance(controlnet, torch.nn.Module):
            self._cn_bind = Binder(forward_signature(controlnet))
            self._add(ForwardPatch(controlnet, KIND, self._controlnet_forward))

    @property
    def key_steps(self):
        return self.config.key_steps

    @property
    def parallel(self) -> bool:
        return self.config.parallel and self.pipe is not None

    def clear(self) -> None:
        self._states: dict[int, tuple] = {}  # slot -> (EncoderState, processor state)
        self._forecast: dict[int, Forecast] = {}  # slot -> (skips, mid) of its last key steps (reuse != "copy")
        self._ready: dict[int, dict[int, torch.Tensor]] = {}  # slot -> step -> precomputed model output
        self._z_T: dict[int, torch.Tensor] = {}
        self._cn: dict[int, tuple] = {}  # ControlNet call slot -> (signature, output)
        self._cn_slots = Slots()
        self._keys: tuple[int, ...] = ()
        self._key_set: frozenset[int] = frozenset()
        self._sequential, self._groups = False, 1
        if self.pipe is None and "_bare" in self.__dict__:
            self._set_keys(self._bare[0])

    def _set_keys(self, keys) -> None:
        self._keys, self._key_set = tuple(keys), frozenset(keys)

    def start(self, run) -> None:
        if self.pipe is None:
            return
        self._set_keys(resolve(self.config.key_steps, run.num_steps))
        spec = self.config.key_steps
        if isinstance(spec, str) and spec != "all" and len(self._keys) == run.num_steps and not self._warned_all:
            self._warned_all = True
            warnings.warn(
                f"encoder_propagation: key_steps={spec!r} makes every one of this call's {run.num_steps} "
                "steps a key step; nothing is skipped (pass an explicit list or 'uniform:N')",
                stacklevel=2,
            )
        self._sequential = run.offset is None or bool(claims(self.unet) & SEQUENTIAL)
        self._groups = 1
        if self.config.parallel and not self._sequential:
            self._groups, culprit = parallel_plan(self._decoder)
            if culprit is not None:
                self._sequential = True
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"encoder_propagation: parallel decoding falls back to sequential: {culprit} does "
                        "not treat batch elements independently",
                        stacklevel=2,
                    )

    # ----------------------------------------------------------------- the patched calls
    def forward(self, original, call: Call, args, kwargs):
        bound = dict(call.bound)
        sample, timestep = bound.pop("sample"), bound.pop("timestep")
        return_dict = bound.pop("return_dict", True)
        cond = {k: v for k, v in bound.items() if v is not None}
        step, slot = call.step, call.slot
        n = self.current_run.num_steps if self.pipe is not None else self._bare[1]
        if self.pipe is None and n is not None and step >= n:
            raise RuntimeError(
                f"encoder_propagation: UNet call {step + 1} is beyond num_inference_steps={n}; "
                "call handle.reset() to start a new image"
            )
        restart = not call.fresh or slot not in self._states
        full = step in self._key_set or restart
        if full:
            state = self.compiled(encode)(self.unet, sample, timestep, **cond)
            self._states[slot] = (state, snapshot(self._encoder))
            if self._order:
                if restart:
                    self._forecast[slot] = Forecast(self._order)
                self._forecast[slot].update((state.skips, state.mid), step)
            self._ready[slot] = {}
            self.mark_full(call)
        else:
            restore(self._states[slot][1])
        self.calls.append((step, full))
        ready = self._ready[slot].pop(step, None)
        if ready is not None and not self.aligned(call):
            ready, self._sequential = None, True
            self._ready[slot].clear()
        out = ready if ready is not None else self._decode_from(call, timestep)
        if n is not None and step == n - 1:
            self._states.pop(slot, None)
            self._ready.pop(slot, None)
            self._forecast.pop(slot, None)
        return self._output(sample=out) if return_dict else (out,)

    def _state_at(self, slot: int, step: int):
        """The slot's encoder state, with its skips and bottleneck forecast at `step` when forecasting."""
        state, forecast = self._states[slot][0], self._forecast.get(slot)
        if forecast is None or forecast.steps[0] == step:
            return state
        skips, mid = forecast.at(step)
        return dataclasses.replace(state, skips=skips, mid=mid)

    def _decode_from(self, call: Call, timestep) -> torch.Tensor:
        """Decode the call's step and, in parallel mode, the following non-key steps in one batch."""
        step, state = call.step, self._state_at(call.slot, call.step)
        end = step + 1
        if self.parallel and not self._sequential and self.aligned(call):
            nxt = bisect.bisect_right(self._keys, step)
            end = self._keys[nxt] if nxt < len(self._keys) else self.current_run.steps()
            if self.config.max_parallel is not None:
                end = min(end, step + self.config.max_parallel)
        if end <= step + 1:
            return self.compiled(decode)(self.unet, state, [timestep])
        ts = self.step_clock.scheduler.timesteps
        start = self.current_run.index(step)
        timesteps = [timestep] + list(ts[start + 1 : start + end - step].unbind())
        g = self._groups
        if g > 1 and state.batch_size % g:
            return self.compiled(decode)(self.unet, state, [timestep])
        forecast = self._forecast.get(call.slot)
        if g > 1 or (forecast is not None and not forecast.copies):  # PAG: a chunk holds a group of every copy
            states = [state, *(self._state_at(call.slot, j) for j in range(step + 1, end))]
            tiled, rows = grouped_state(states, timesteps, g)
            eps = copy_major(self.compiled(decode)(self.unet, tiled, [rows]), len(timesteps), g)
        else:
            eps = self.compiled(decode)(self.unet, state, timesteps)
        b = state.batch_size
        for k, j in enumerate(range(step + 1, end), start=1):
            self._ready[call.slot][j] = eps[k * b : (k + 1) * b]
        return eps[:b]

    def _controlnet_forward(self, original, *args, **kwargs):
        """Run the ControlNet only where the UNet's encoder runs (key steps, new inputs); elsewhere return the
        slot's residuals from then (the decoder does not read them)."""
        self.follow_scheduler()
        step = self.step_clock.step_index
        slot = self._cn_slots.of(step)
        bound = self._cn_bind(args, kwargs)
        sig = call_signature(bound)
        cached = self._cn.get(slot)
        if self.run is None or step in self._key_set or cached is None or cached[0] != sig:
            cached = (sig, original(*args, **kwargs))
            self._cn[slot] = cached
        return cached[1]

    def before_step(self, step: int, slot: int, kwargs: dict) -> None:
        """Prior noise injection (Faster Diffusion Sec. 3.4): z <- z + alpha * z_T before late scheduler steps."""
        alpha = self.config.noise_injection
        if alpha is None or "sample" not in kwargs:
            return
        if step == 0:
            self._z_T[slot] = kwargs["sample"].clone()
        z_T, host, i = self._z_T.get(slot), self.step_clock.timesteps, (self.current_run.offset or 0) + step
        if z_T is not None and i < len(host) and host[i] < self.config.injection_threshold:
            kwargs["sample"] = kwargs["sample"] + alpha * z_T


def _bare_keys(spec, num_inference_steps):
    """(key steps, number of calls or None) for a bare UNet."""
    if isinstance(spec, (list, tuple)):
        return resolve(spec, num_inference_steps or max(spec) + 1), num_inference_steps
    if num_inference_steps is None and not isinstance(spec, KeySteps) and not str(spec).endswith(".json"):
        raise ValueError(
            f"num_inference_steps: required for a bare UNet with key_steps={spec!r} (the number of "
            "UNet calls per image), or pass an explicit list of key steps"
        )
    n = num_inference_steps or (spec if isinstance(spec, KeySteps) else KeySteps.load(spec)).num_steps
    return resolve(spec, n), n


def _check_args(parallel, noise_injection, injection_threshold, max_parallel, num_inference_steps) -> None:
    if not isinstance(parallel, bool):
        raise ValueError(f"parallel: expected True or False, got {parallel!r}")
    if noise_injection is not None and (
        isinstance(noise_injection, bool)
        or not isinstance(noise_injection, (int, float))
        or not math.isfinite(noise_injection)
        or noise_injection < 0
    ):
        raise ValueError(f"noise_injection: expected a finite number >= 0 or None (off), got {noise_injection!r}")
    if isinstance(injection_threshold, bool) or not isinstance(injection_threshold, (int, float)):
        raise ValueError(f"injection_threshold: expected a timestep value (number), got {injection_threshold!r}")
    for name, v in (("max_parallel", max_parallel), ("num_inference_steps", num_inference_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected a positive int or None, got {v!r}")


def encoder_propagation(
    target,
    key_steps="paper",
    parallel: bool = True,
    noise_injection: float | None = 0.003,
    injection_threshold: float = 500,
    max_parallel: int | None = None,
    num_inference_steps: int | None = None,
    reuse: str = "copy",
) -> EncoderPropagation:
    """Apply encoder propagation (Faster Diffusion) to a diffusers pipeline or a bare UNet; returns the handle."""
    return EncoderPropagation(
        target,
        EncoderPropagationConfig(
            key_steps=key_steps,
            parallel=parallel,
            noise_injection=noise_injection,
            injection_threshold=injection_threshold,
            max_parallel=max_parallel,
            num_inference_steps=num_inference_steps,
            reuse=reuse,
        ),
    )
