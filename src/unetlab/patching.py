"""Named, removable, loud patches on pipelines and UNets, and the one step source they share.

- `resolve(target)`: (pipeline or None, unet) from a diffusers pipeline or a bare UNet.
- `claim(obj, kind, owner)` / `release(obj, kind)`: at most one patch of a kind per object; a second is an error;
  `owner(obj, kind)` is the handle holding it (for a handle stacked above another that asks it something). While
  `obj` holds a claim, `copy.deepcopy` of it (or of a pipeline holding it) is refused: the copy would carry hooks and
  claims that no handle can remove.
- `ForwardPatch`: replaces a module's forward through diffusers' `HookRegistry` (chains with other hooks,
  removable in any order).
- `EagerEntry`: makes a `torch.compile` wrapper call its model eagerly while handles are applied to the model.
- `StepSource`: the one wrapper of a scheduler's `set_timesteps` and `step`, shared by every listener on that
  scheduler (installed by the first, removed with the last, so listeners leave in any order). The step counter
  lives in the scheduler's own `__dict__`, so a pipeline that copies and restores the scheduler's state
  (Panorama/MultiDiffusion does, once per view) carries each view's step index along; the wrappers are plain
  functions and the source copies as itself, so a deep copy of that state copies neither.
- `StepClock`: one listener (`step_index`, `num_steps`, `timesteps`, enter, start and before-step callbacks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .errors import StackingError

_CLAIMS = "_unetlab_patches"
_DEEPCOPY = "__deepcopy__"  # `copy.deepcopy` looks it up on the instance
_SOURCE = "_unetlab_step_source"
_COUNT = "_unetlab_step"
_METHODS = ("set_timesteps", "step")
_ROUTE = "_unetlab_eager_entry"


def resolve(target) -> tuple[Any, torch.nn.Module]:
    """Split `target` into (pipeline or None, unet); raise a one-line error for anything else."""
    unet = getattr(target, "unet", None)
    if isinstance(unet, torch.nn.Module) and hasattr(target, "scheduler"):
        return target, unet
    if isinstance(target, torch.nn.Module) and hasattr(target, "up_blocks") and hasattr(target, "down_blocks"):
        return None, target
    raise TypeError(
        f"target: expected a diffusers pipeline with a .unet or a diffusers UNet, got {type(target).__name__}"
    )


class _NoDeepCopy:
    """`obj.__deepcopy__` while `obj` holds claims: a one-line refusal naming them."""

    def __init__(self, name: str, kinds: set):
        self.name, self.kinds = name, kinds

    def __call__(self, memo):
        raise RuntimeError(
            f"deepcopy: this {self.name} has unetlab patches on it ({', '.join(sorted(self.kinds))}); "
            "deep-copy it before applying them or after .remove()"
        )


def claim(obj, kind: str, owner: Any = None) -> None:
    """Record that a patch of `kind`, held by `owner`, is on `obj`; applying a second one of the same kind raises."""
    claims = obj.__dict__.setdefault(_CLAIMS, {})
    if kind in claims:
        raise StackingError(f"{kind}: already applied to this {type(obj).__name__}; call .remove() on the first handle")
    claims[kind] = owner
    obj.__dict__.setdefault(_DEEPCOPY, _NoDeepCopy(type(obj).__name__, claims))


def claims(obj) -> frozenset[str]:
    """The kinds of patch currently on `obj`."""
    return frozenset(obj.__dict__.get(_CLAIMS, ()))


def owner(obj, kind: str) -> Any:
    """The handle holding `obj`'s patch of `kind` (None if there is none)."""
    return obj.__dict__.get(_CLAIMS, {}).get(kind)


def release(obj, kind: str) -> None:
    claims = obj.__dict__.get(_CLAIMS, {})
    claims.pop(kind, None)
    if not claims:
        obj.__dict__.pop(_CLAIMS, None)
        if isinstance(obj.__dict__.get(_DEEPCOPY), _NoDeepCopy):
            del obj.__dict__[_DEEPCOPY]


class _Forward(ModelHook):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def new_forward(self, module, *args, **kwargs):
        return self.fn(self.fn_ref.original_forward, *args, **kwargs)


class ForwardPatch:
    """Replace `module.forward` by `fn(original_forward, *args, **kwargs)` until `.remove()` (idempotent)."""

    def __init__(self, module: torch.nn.Module, name: str, fn: Callable):
        self.module, self.name = module, name
        HookRegistry.check_if_exists_or_initialize(module).register_hook(_Forward(fn), name)

    def remove(self) -> None:
        registry = getattr(self.module, "_diffusers_hook", None)
        if registry is not None and self.name in registry.hooks:
            index = registry._hook_order.index(self.name)
            outer = registry._fn_refs[index + 1] if index + 1 < len(registry._fn_refs) else None
            outer_forward = outer.forward if outer is not None else None
            registry.remove_hook(self.name, recurse=False)
            if outer is not None and outer.original_forward is not None:
                # diffusers points the outer hook's `forward` at what ran under the removed hook, which would skip
                # the outer hook's own new_forward; that is the outer hook's original forward now
                outer.original_forward, outer.forward = outer.forward, outer_forward
            if not registry.hooks:
                del self.module._diffusers_hook
                self.module.__dict__.pop("forward", None)


class EagerEntry:
    """While installed on a `torch.compile` wrapper (`OptimizedModule`), its calls enter the model it wraps eagerly,
    so that the patches on the model decide in Python and call back into compiled code themselves; shared by every
    handle on the wrapper (installed by the first, its `forward` restored exactly by the last)."""

    def __init__(self, wrapper: torch.nn.Module):
        d = self._dict = wrapper.__dict__  # the wrapper's own attributes (setattr would reach the wrapped model)
        if _ROUTE not in d:
            d[_ROUTE] = [d["forward"]]
            d["forward"] = wrapper._orig_mod.__call__
        d[_ROUTE].append(self)

    def remove(self) -> None:
        users = self._dict.get(_ROUTE)
        if users is not None and self in users:
            users.remove(self)
            if len(users) == 1:
                self._dict["forward"] = users[0]
                del self._dict[_ROUTE]


class _Wrapper:
    """`scheduler.<name>` while a source is installed. Copying the scheduler's state alone (Panorama) keeps the
    wrapper; a deep copy of the whole scheduler gets its own unwrapped method instead."""

    def __init__(self, source: StepSource, name: str, inner: Callable):
        self.source, self.name, self.inner = source, name, inner
        functools.update_wrapper(self, inner)  # pipelines inspect step's signature (eta, generator)

    def __call__(self, *args, **kwargs):
        return getattr(self.source, f"_{self.name}")(self.inner, args, kwargs)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        copied = memo.get(id(self.source.scheduler))
        return self if copied is None else getattr(type(copied), self.name).__get__(copied)


class Slots:
    """The slot of each call of a step: 0 for the step's first call, 1 for the next call at the same step, ..."""

    def __init__(self):
        self._step, self._slot = -1, 0

    def of(self, step: int) -> int:
        self._slot = self._slot + 1 if step == self._step else 0
        self._step = step
        return self._slot


class StepSource:
    """Which step of a pipeline call the scheduler is at: reset by `set_timesteps`, advanced by `step`.

    Listeners have `enter(start)` (called before `set_timesteps` (`start`) or `step` touches anything; it may raise
    to refuse the call), `on_start()` (a call's `set_timesteps` ran) and `before_step(index, slot, kwargs)` (the
    scheduler is about to step; `slot` counts the `step` calls of one index, e.g. one per Panorama view;
    `kwargs` holds `model_output`, `timestep`, `sample` and may be changed).
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.listeners: list = []
        ts = getattr(scheduler, "timesteps", None)
        self.timesteps: list[float] = ts.detach().cpu().tolist() if torch.is_tensor(ts) else []
        self._slots = Slots()
        d = scheduler.__dict__
        self._saved = {name: d[name] for name in (*_METHODS, _COUNT) if name in d}
        d.update({name: _Wrapper(self, name, getattr(scheduler, name)) for name in _METHODS})
        d[_SOURCE], d[_COUNT] = self, 0

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    @classmethod
    def subscribe(cls, scheduler, listener) -> StepSource:
        """The scheduler's source (installed now if it has none), with `listener` added."""
        source = scheduler.__dict__.get(_SOURCE)
        if source is None or source.scheduler is not scheduler:  # none, or left in a deep copy of the scheduler
            source = cls(scheduler)
        source.listeners.append(listener)
        return source

    def unsubscribe(self, listener) -> None:
        """Drop `listener`; the last one leaving restores the scheduler's methods exactly."""
        self.listeners = [x for x in self.listeners if x is not listener]
        if not self.listeners and self.scheduler.__dict__.get(_SOURCE) is self:
            d = self.scheduler.__dict__
            for name in (*_METHODS, _COUNT, _SOURCE):
                d.pop(name, None)
            d.update(self._saved)

    @property
    def index(self) -> int:
        return self.scheduler.__dict__.get(_COUNT, 0)

    def _enter(self, start: bool) -> None:
        for listener in list(self.listeners):
            listener.enter(start)

    def _set_timesteps(self, inner, args, kwargs):
        self._enter(True)
        out = inner(*args, **kwargs)
        self.timesteps = self.scheduler.timesteps.detach().cpu().tolist()
        self.scheduler.__dict__[_COUNT] = 0
        self._slots = Slots()
        for listener in list(self.listeners):
            listener.on_start()
        return out

    def _step(self, inner, args, kwargs):
        self._enter(False)
        index = self.index
        slot = self._slots.of(index)
        if len(args) <= 3:
            kwargs.update(zip(("model_output", "timestep", "sample"), args))
            args = ()
            for listener in list(self.listeners):
                listener.before_step(index, slot, kwargs)
        try:
            return inner(*args, **kwargs)
        finally:
            self.scheduler.__dict__[_COUNT] = index + 1


class StepClock:
    """A listener on a scheduler's `StepSource`: `step_index`, `num_steps` and `timesteps` of the current call,
    `on_enter(start)`, `on_start()` and `before_step(step_index, slot, kwargs)` callbacks; `.remove()` unsubscribes
    (idempotent)."""

    def __init__(
        self,
        scheduler,
        on_start: Callable[[], None] | None = None,
        before_step: Callable[[int, int, dict], None] | None = None,
        on_enter: Callable[[bool], None] | None = None,
    ):
        self.scheduler = scheduler
        self._on_start, self._before_step, self._on_enter = on_start, before_step, on_enter
        self.source: StepSource | None = StepSource.subscribe(scheduler, self)

    @property
    def step_index(self) -> int:
        return self.source.index if self.source is not None else 0

    @property
    def timesteps(self) -> list[float]:
        return self.source.timesteps if self.source is not None else []

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def enter(self, start: bool) -> None:
        if self._on_enter is not None:
            self._on_enter(start)

    def on_start(self) -> None:
        if self._on_start is not None:
            self._on_start()

    def before_step(self, index: int, slot: int, kwargs: dict) -> None:
        if self._before_step is not None:
            self._before_step(index, slot, kwargs)

    def remove(self) -> None:
        if self.source is not None:
            self.source.unsubscribe(self)
            self.source = None
