"""The handle shared by branch caching and clockwork: full UNet at full steps, partial UNet in between.

At a full step the model's own forward runs and the deep path's outputs are stored (`unet.partial`);
at any other step the deep path returns what it stored and only the shallow levels run. The step index
comes from the pipeline's scheduler (`patching.StepClock`), never from a timestep's value, so schedulers
that repeat timesteps (Heun) work; on a bare UNet each call is one step and `reset()` starts over.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..patching import ForwardPatch, StepClock, claim, claims, release, resolve
from ..unet.partial import DeepPath

KINDS = frozenset({"branch_cache", "clockwork"})


class DeepReuseHandle:
    """Removable patch that runs the full UNet where `is_full(step)` and the partial UNet elsewhere.

    `calls` lists (step index, full?) for every UNet call since the last pipeline call started (or `reset()`).
    """

    def __init__(self, target, kind: str, deep: Callable[[torch.nn.Module], list], is_full: Callable[[int], bool],
                 check_steps: Callable[[int], None]):
        pipe, unet = resolve(target)
        modules = deep(unet)  # (name, module) of the deep path; raises on an impossible cut
        other = sorted(claims(unet) & KINDS - {kind})
        if other:
            raise RuntimeError(f"{kind}: {other[0]} is already applied to this UNet and both replace its deep path; "
                               f"call .remove() on the {other[0]} handle first")
        claim(unet, kind)
        self.kind, self.unet = kind, unet
        self._is_full, self._check_steps = is_full, check_steps
        self.calls: list[tuple[int, bool]] = []
        self._shapes: dict[int, tuple] = {}
        self._step, self._slot, self._n = -1, 0, 0
        self._removed = False
        try:
            self.deep = DeepPath(modules, name=f"unetlab.{kind}.deep")
            self._patch = ForwardPatch(unet, f"unetlab.{kind}", self._forward)
            self.clock = StepClock(pipe.scheduler, on_start=self._on_start) if pipe is not None else None
        except Exception:
            self._undo()
            raise

    def _on_start(self) -> None:
        self._check_steps(self.clock.num_steps)
        self.reset()

    def reset(self) -> None:
        """Forget stored features and start counting steps from 0 (done automatically per pipeline call)."""
        self.deep.clear()
        self.calls, self._shapes = [], {}
        self._step, self._slot, self._n = -1, 0, 0

    def _forward(self, original, *args, **kwargs):
        step = self.clock.step_index if self.clock is not None else self._n
        self._n += 1
        self._slot = self._slot + 1 if step == self._step else 0
        self._step = step
        sample = args[0] if args else kwargs["sample"]
        full = self._is_full(step)
        if full:
            self._shapes[self._slot] = tuple(sample.shape)
        elif self._shapes.get(self._slot) != tuple(sample.shape):
            raise RuntimeError(
                f"{self.kind}: step {step} reuses features, but call {self._slot} of it has sample shape "
                f"{tuple(sample.shape)} and the last full step had {self._shapes.get(self._slot)}; "
                "step 0 must be full and inputs must keep their shape (on a bare UNet, call handle.reset())")
        self.calls.append((step, full))
        self.deep.reuse, self.deep.slot = not full, self._slot
        try:
            return original(*args, **kwargs)
        finally:
            self.deep.reuse = False

    def _undo(self) -> None:
        for name in ("clock", "_patch", "deep"):
            part = self.__dict__.pop(name, None)
            if part is not None:
                part.remove()
        release(self.unet, self.kind)

    def remove(self) -> None:
        """Restore the UNet and scheduler exactly as they were; calling it twice is harmless."""
        if not self._removed:
            self._removed = True
            self._undo()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
