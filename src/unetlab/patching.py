"""Named, removable, loud patches on pipelines and UNets, and the step clock they share.

- `resolve(target)`: (pipeline or None, unet) from a diffusers pipeline or a bare UNet.
- `claim(obj, kind)` / `release(obj, kind)`: at most one patch of a kind per object; a second is an error.
- `ForwardPatch`: replaces a module's forward through diffusers' `HookRegistry` (chains with other hooks,
  removable in any order).
- `StepClock`: counts the sampling steps of a pipeline call from the scheduler itself (reset by
  `set_timesteps`, advanced by `step`), so that no patch looks a timestep up with `.item()`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from diffusers.hooks import HookRegistry, ModelHook

_CLAIMS = "_unetlab_patches"


def resolve(target) -> tuple[Any, torch.nn.Module]:
    """Split `target` into (pipeline or None, unet); raise a one-line error for anything else."""
    unet = getattr(target, "unet", None)
    if isinstance(unet, torch.nn.Module) and hasattr(target, "scheduler"):
        return target, unet
    if isinstance(target, torch.nn.Module) and hasattr(target, "up_blocks") and hasattr(target, "down_blocks"):
        return None, target
    raise TypeError(f"target: expected a diffusers pipeline with a .unet or a diffusers UNet, got {type(target).__name__}")


def claim(obj, kind: str) -> None:
    """Record that a patch of `kind` is on `obj`; applying a second one of the same kind raises."""
    claims = obj.__dict__.setdefault(_CLAIMS, set())
    if kind in claims:
        raise RuntimeError(f"{kind}: already applied to this {type(obj).__name__}; call .remove() on the first handle")
    claims.add(kind)


def claims(obj) -> frozenset[str]:
    """The kinds of patch currently on `obj`."""
    return frozenset(obj.__dict__.get(_CLAIMS, ()))


def release(obj, kind: str) -> None:
    claims = obj.__dict__.get(_CLAIMS, set())
    claims.discard(kind)
    if not claims:
        obj.__dict__.pop(_CLAIMS, None)


class _Forward(ModelHook):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def new_forward(self, module, *args, **kwargs):
        return self.fn(self.fn_ref.original_forward, *args, **kwargs)


class ForwardPatch:
    """Replace `module.forward` by `fn(original_forward, *args, **kwargs)` until `.remove()`."""

    def __init__(self, module: torch.nn.Module, name: str, fn: Callable):
        self.module, self.name = module, name
        HookRegistry.check_if_exists_or_initialize(module).register_hook(_Forward(fn), name)

    def remove(self) -> None:
        registry = getattr(self.module, "_diffusers_hook", None)
        if registry is not None:
            registry.remove_hook(self.name, recurse=False)
            if not registry.hooks:
                del self.module._diffusers_hook
                self.module.__dict__.pop("forward", None)


class MethodPatch:
    """Wrap a plain object's method (for example a scheduler's `step`) in the instance, until `.remove()`."""

    def __init__(self, obj, method: str, wrapper: Callable[..., Any]):
        self.obj, self.method = obj, method
        self.had_own = method in obj.__dict__
        self.previous = obj.__dict__.get(method)
        inner = getattr(obj, method)
        setattr(obj, method, functools.wraps(inner)(functools.partial(wrapper, inner)))

    def remove(self) -> None:
        if self.had_own:
            setattr(self.obj, self.method, self.previous)
        else:
            self.obj.__dict__.pop(self.method, None)


class StepClock:
    """Which sampling step a pipeline call is at, read from its scheduler.

    `set_timesteps` starts a call (step 0, `timesteps` copied once to the host); each `step` advances it.
    `on_start()` and `before_step(step_index, kwargs)` callbacks let a patch reset its state and act
    (for example, prior noise injection) without replacing the pipeline's `__call__`.
    """

    def __init__(self, scheduler, on_start: Callable[[], None] | None = None,
                 before_step: Callable[[int, dict], None] | None = None):
        self.scheduler = scheduler
        self.step_index = 0
        self.timesteps: list[float] = []
        self._on_start, self._before_step = on_start, before_step
        self._patches = [MethodPatch(scheduler, "set_timesteps", self._set_timesteps),
                         MethodPatch(scheduler, "step", self._step)]

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def _set_timesteps(self, inner, *args, **kwargs):
        out = inner(*args, **kwargs)
        self.timesteps = self.scheduler.timesteps.detach().cpu().tolist()
        self.step_index = 0
        if self._on_start is not None:
            self._on_start()
        return out

    def _step(self, inner, *args, **kwargs):
        if self._before_step is not None and len(args) <= 3:
            kwargs.update(zip(("model_output", "timestep", "sample"), args))
            args = ()
            self._before_step(self.step_index, kwargs)
        try:
            return inner(*args, **kwargs)
        finally:
            self.step_index += 1

    def remove(self) -> None:
        for p in reversed(self._patches):
            p.remove()
