"""Encoder propagation (Faster Diffusion, Li et al. 2023, Sec. 3.3): reuse the UNet encoder at non-key steps.

At a key step the whole UNet runs (`encode` + `decode`) and its skips and bottleneck output are cached; at a
non-key step only the decoder runs on the cache, with that step's own timestep. In parallel mode the decoder
of a key step and of the following non-key steps (up to the next key step, at most `max_parallel`) runs as
one batch and the pipeline's loop receives the precomputed model outputs at those steps (sequential while
branch caching or clockwork, applied after it, reuses deep features that belong to a single step). Prior noise
injection adds `alpha * z_T` to the sample given to each scheduler step whose timestep is below
`injection_threshold`. Everything goes through the normal `pipe(...)` call: the UNet's forward and the
scheduler's `set_timesteps`/`step` are patched, nothing else.

A bare UNet (no scheduler) is driven by the user's loop: calls are counted, `handle.reset()` starts a new
image, decoding is sequential and no noise is injected; the key steps of a named spec need
`num_inference_steps=` at apply time.
"""

from __future__ import annotations

import bisect
import inspect
import math

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from .. import patching, schedules
from ..unet import EncoderState, check_supported, decode, encode
from . import deep_reuse

KIND = "encoder_propagation"


class EncoderPropagation:
    """Handle of an applied encoder propagation; a context manager, removed by `.remove()`."""

    def __init__(self, target, key_steps="paper", parallel: bool = True, noise_injection: float | None = 0.003,
                 injection_threshold: float = 500, max_parallel: int | None = None,
                 num_inference_steps: int | None = None):
        _check_args(parallel, noise_injection, injection_threshold, max_parallel, num_inference_steps)
        schedules.check_spec(key_steps)
        self.pipe, self.unet = patching.resolve(target)
        check_supported(self.unet)
        if self.pipe is not None and num_inference_steps is not None:
            raise ValueError("num_inference_steps: only for a bare UNet; a pipeline's step count comes from its "
                             "scheduler at each call")
        if self.pipe is None:
            self._bare_keys(key_steps, num_inference_steps)
        self.key_steps, self.noise_injection, self.injection_threshold = key_steps, noise_injection, injection_threshold
        self.parallel = bool(parallel) and self.pipe is not None
        self.max_parallel = max_parallel if self.parallel else 1
        self._signature = _forward_signature(self.unet)
        self._output = UNet2DConditionOutput if isinstance(self.unet, UNet2DConditionModel) else UNet2DOutput
        outer = sorted(patching.claims(self.unet) & deep_reuse.KINDS)
        if outer:
            raise RuntimeError(f"encoder_propagation: apply it before {outer[0]} (its patch would never run under "
                               f"encoder propagation's forward); remove the {outer[0]} handle, apply encoder "
                               f"propagation, then {outer[0]}")
        patching.claim(self.unet, KIND)
        self._claimed = True
        self._patches: list = []
        self._clock = None
        try:
            self._patches.append(patching.ForwardPatch(self.unet, KIND, self._unet_forward))
            if self.pipe is not None:
                self.scheduler = self.pipe.scheduler
                self._clock = patching.StepClock(self.scheduler, on_start=self._start, before_step=self._before_step)
                self._patches.append(self._clock)
                controlnet = getattr(self.pipe, "controlnet", None)
                if isinstance(controlnet, torch.nn.Module):
                    self._patches.append(patching.ForwardPatch(controlnet, KIND, self._controlnet_forward))
        except BaseException:
            self.remove()
            raise
        self.reset()

    # ----------------------------------------------------------------- lifecycle
    def _bare_keys(self, spec, num_inference_steps):
        if isinstance(spec, (list, tuple)):
            keys = schedules.resolve(spec, num_inference_steps or max(spec) + 1)
            self._bare = (keys, num_inference_steps)
        elif num_inference_steps is None and not isinstance(spec, schedules.KeySteps) and not str(spec).endswith(".json"):
            raise ValueError(f"num_inference_steps: required for a bare UNet with key_steps={spec!r} (the number of "
                             "UNet calls per image), or pass an explicit list of key steps")
        else:
            n = num_inference_steps or (spec if isinstance(spec, schedules.KeySteps) else schedules.KeySteps.load(spec)).num_steps
            self._bare = (schedules.resolve(spec, n), n)

    def reset(self) -> None:
        """Forget the cached state (start a new image); done automatically at each `scheduler.set_timesteps`."""
        self._state: EncoderState | None = None
        self._sample_shape = None
        self._ready: dict[int, torch.Tensor] = {}
        self._last_step = -1
        self._calls = 0
        self._z_T = None
        self._controlnet_out = None
        if self.pipe is None:
            self._set_keys(*self._bare)
        else:
            self._keys, self._num_steps = None, None

    def _set_keys(self, keys, num_steps):
        self._keys, self._num_steps = tuple(keys), num_steps
        self._key_set = frozenset(keys)

    def _start(self) -> None:
        self.reset()
        n = self._clock.num_steps
        self._set_keys(schedules.resolve(self.key_steps, n), n)

    def remove(self) -> None:
        """Restore the UNet, scheduler and ControlNet exactly; safe to call twice."""
        for p in reversed(self._patches):
            p.remove()
        self._patches = []
        if self._claimed:
            patching.release(self.unet, KIND)
            self._claimed = False
        self._state, self._ready = None, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    # ----------------------------------------------------------------- the patched calls
    def _step_index(self) -> int:
        if self.pipe is None:
            step = self._calls
            if self._num_steps is not None and step >= self._num_steps:
                raise RuntimeError(f"encoder_propagation: UNet call {step + 1} is beyond num_inference_steps="
                                   f"{self._num_steps}; call handle.reset() to start a new image")
            self._calls += 1
            return step
        if self.pipe.scheduler is not self.scheduler:
            raise RuntimeError("encoder_propagation: pipe.scheduler was replaced after applying; remove the handle, "
                               "set the scheduler, then apply again")
        if self._keys is None:
            raise RuntimeError("encoder_propagation: the UNet was called before scheduler.set_timesteps; only the "
                               "pipeline's sampling loop can drive an accelerated UNet")
        step = self._clock.step_index
        if step == self._last_step:
            raise RuntimeError(f"encoder_propagation: the UNet was called twice at step {step}; the pipeline must "
                               "call the UNet once per scheduler step")
        if step >= self._num_steps:
            raise RuntimeError(f"encoder_propagation: UNet call at step {step}, but the schedule has "
                               f"{self._num_steps} steps")
        return step

    def _check_timestep(self, step: int, timestep) -> None:
        """The pipeline must pass scheduler.timesteps[step] (checked without a device sync)."""
        ts = self.scheduler.timesteps
        if torch.is_tensor(timestep) and timestep.device.type != "cpu":
            same_storage = timestep.untyped_storage().data_ptr() == ts.untyped_storage().data_ptr()
            if not same_storage or timestep.numel() != 1:
                return
            ok = timestep.storage_offset() == ts.storage_offset() + step * ts.stride(0)
        else:
            value = timestep.flatten()[0].item() if torch.is_tensor(timestep) else timestep
            ok = math.isclose(float(value), float(self._clock.timesteps[step]), rel_tol=1e-6, abs_tol=1e-6)
        if not ok:
            raise RuntimeError(f"encoder_propagation: the UNet call at step {step} did not get scheduler.timesteps"
                               f"[{step}] = {self._clock.timesteps[step]}; pipelines that start mid-schedule "
                               "(img2img, strength < 1) or reorder timesteps are not supported")

    def _unet_forward(self, original_forward, *args, **kwargs):
        bound = self._signature.bind(*args, **kwargs).arguments
        sample, timestep = bound.pop("sample"), bound.pop("timestep")
        return_dict = bound.pop("return_dict", True)
        cond = {k: v for k, v in bound.items() if v is not None}
        step = self._step_index()
        if self.pipe is not None:
            self._check_timestep(step, timestep)
        self._last_step = step
        if step in self._key_set:
            self._state, self._sample_shape = encode(self.unet, sample, timestep, **cond), sample.shape
            self._ready.clear()
        elif self._state is None:
            raise RuntimeError(f"encoder_propagation: step {step} is not a key step and no encoder state is cached")
        elif sample.shape != self._sample_shape:
            raise RuntimeError(f"encoder_propagation: the UNet input changed from {tuple(self._sample_shape)} to "
                               f"{tuple(sample.shape)} at step {step}; the cached encoder state is for the exact batch "
                               "of the last key step")
        out = self._ready.pop(step, None)
        if out is None:
            out = self._decode_from(step, timestep)
        if self._num_steps is not None and step == self._num_steps - 1:
            self._state, self._ready = None, {}
        return self._output(sample=out) if return_dict else (out,)

    def _decode_from(self, step: int, timestep) -> torch.Tensor:
        """Decode `step` and, in parallel mode, the following non-key steps in one batch; keep the extra slices."""
        end = step + 1
        if self.parallel and not patching.claims(self.unet) & deep_reuse.KINDS:
            nxt = bisect.bisect_right(self._keys, step)
            end = self._keys[nxt] if nxt < len(self._keys) else self._num_steps
            if self.max_parallel is not None:
                end = min(end, step + self.max_parallel)
        timesteps = [timestep] + list(self.scheduler.timesteps[step + 1:end].unbind()) if end > step + 1 else [timestep]
        eps = decode(self.unet, self._state, timesteps)
        b = self._state.batch_size
        for n, j in enumerate(range(step + 1, end), start=1):
            self._ready[j] = eps[n * b:(n + 1) * b]
        return eps[:b] if end > step + 1 else eps

    def _controlnet_forward(self, original_forward, *args, **kwargs):
        """Run the ControlNet only at key steps; elsewhere return the key step's residuals (the decoder ignores them)."""
        if self._keys is None or self._controlnet_out is None or self._clock.step_index in self._key_set:
            self._controlnet_out = original_forward(*args, **kwargs)
        return self._controlnet_out

    def _before_step(self, step: int, kwargs: dict) -> None:
        """Prior noise injection (Faster Diffusion Sec. 3.4): z <- z + alpha * z_T before late scheduler steps."""
        if self.noise_injection is None or "sample" not in kwargs:
            return
        if step == 0:
            self._z_T = kwargs["sample"].clone()
        if self._z_T is not None and self._clock.timesteps[step] < self.injection_threshold:
            kwargs["sample"] = kwargs["sample"] + self.noise_injection * self._z_T


def _forward_signature(unet) -> inspect.Signature:
    sig = inspect.signature(type(unet).forward)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def _check_args(parallel, noise_injection, injection_threshold, max_parallel, num_inference_steps) -> None:
    if not isinstance(parallel, bool):
        raise TypeError(f"parallel: expected True or False, got {parallel!r}")
    if noise_injection is not None and (isinstance(noise_injection, bool) or not isinstance(noise_injection, (int, float))
                                        or not math.isfinite(noise_injection) or noise_injection < 0):
        raise ValueError(f"noise_injection: expected a finite number >= 0 or None (off), got {noise_injection!r}")
    if isinstance(injection_threshold, bool) or not isinstance(injection_threshold, (int, float)):
        raise ValueError(f"injection_threshold: expected a timestep value (number), got {injection_threshold!r}")
    for name, v in (("max_parallel", max_parallel), ("num_inference_steps", num_inference_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected a positive int or None, got {v!r}")


def encoder_propagation(target, key_steps="paper", parallel: bool = True, noise_injection: float | None = 0.003,
                        injection_threshold: float = 500, max_parallel: int | None = None,
                        num_inference_steps: int | None = None) -> EncoderPropagation:
    """Apply encoder propagation (Faster Diffusion) to a diffusers pipeline or a bare UNet; returns the handle."""
    return EncoderPropagation(target, key_steps, parallel, noise_injection, injection_threshold, max_parallel,
                              num_inference_steps)
