"""Block skipping: do not run chosen UNet blocks inside chosen step windows (Prasad et al. 2023, arXiv 2312.14965).

A plan lists (component, start, end, replace) windows. Inside a window the component's `forward` is replaced
(through diffusers' HookRegistry) and never called: its output is the one cached at the last step where it ran
in this pipeline call ("cached") or zeros of that shape ("zeros"). A component that has not run yet in the call
runs once to fill its cache. Plans are JSON; `unetlab analyze derive` writes them from an ablation grid.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..patching import ForwardPatch, StepClock, claim, release, resolve

KIND = "block_skip"
REPLACES = ("cached", "zeros")
_COMPONENT = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)$")


def map_tensors(out, fn):
    """Apply `fn` to every tensor in a (nested tuple of) module output(s), keeping the structure."""
    if torch.is_tensor(out):
        return fn(out)
    if isinstance(out, (tuple, list)):
        return type(out)(map_tensors(o, fn) for o in out)
    return out


def block_components(unet) -> list[str]:
    """The names `block_skip` accepts for `unet`: each down block, the mid block, each up block."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    names += ["mid_block"] if unet.mid_block is not None else []
    return names + [f"up_blocks.{j}" for j in range(len(unet.up_blocks))]


@dataclass(frozen=True)
class SkipWindow:
    """Skip `component` at steps start <= i < end, feeding its `replace` output instead."""

    component: str
    start: int
    end: int
    replace: str = "cached"

    def __post_init__(self):
        if not _COMPONENT.match(str(self.component)):
            raise ValueError(f"component: {self.component!r} is not a block name (down_blocks.i, mid_block, up_blocks.j)")
        if not (isinstance(self.start, int) and isinstance(self.end, int) and 0 <= self.start <= self.end):
            raise ValueError(f"window: expected integers 0 <= start <= end, got start={self.start!r}, end={self.end!r}")
        if self.replace not in REPLACES:
            raise ValueError(f"replace: {self.replace!r} is not one of {', '.join(REPLACES)}")

    def __contains__(self, step: int) -> bool:
        return self.start <= step < self.end


@dataclass
class BlockSkipPlan:
    """Windows of skipped blocks for one number of sampling steps (None: any), saved as JSON."""

    windows: list[SkipWindow] = field(default_factory=list)
    num_inference_steps: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.windows = [w if isinstance(w, SkipWindow) else SkipWindow(**w) for w in self.windows]
        by_component: dict[str, list[SkipWindow]] = {}
        for w in self.windows:
            by_component.setdefault(w.component, []).append(w)
        for name, ws in by_component.items():
            ws = sorted(ws, key=lambda w: w.start)
            for a, b in zip(ws, ws[1:]):
                if b.start < a.end:
                    raise ValueError(f"windows: {name} has overlapping windows [{a.start}, {a.end}) and [{b.start}, {b.end})")
        if self.num_inference_steps is not None:
            late = [w for w in self.windows if w.end > self.num_inference_steps]
            if late:
                raise ValueError(f"windows: {late[0]} ends after num_inference_steps={self.num_inference_steps}")

    def to_dict(self) -> dict:
        return {"kind": "unetlab.block_skip", "version": 1, "num_inference_steps": self.num_inference_steps,
                "windows": [asdict(w) for w in self.windows], "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "BlockSkipPlan":
        if d.get("kind") != "unetlab.block_skip":
            raise ValueError(f"plan: expected kind 'unetlab.block_skip', got {d.get('kind')!r}")
        return cls(d.get("windows", []), d.get("num_inference_steps"), d.get("meta", {}))

    def save(self, path) -> Path:
        """Write the plan as JSON atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "BlockSkipPlan":
        return cls.from_dict(json.loads(Path(path).read_text()))


def as_plan(plan) -> BlockSkipPlan:
    """A `BlockSkipPlan` from a plan, its dict, a JSON path, or a list of windows."""
    if isinstance(plan, BlockSkipPlan):
        return plan
    if isinstance(plan, dict):
        return BlockSkipPlan.from_dict(plan)
    if isinstance(plan, (str, os.PathLike)):
        if not Path(plan).is_file():
            raise FileNotFoundError(f"plan: no such JSON file {plan}")
        return BlockSkipPlan.load(plan)
    if isinstance(plan, (list, tuple)):
        return BlockSkipPlan(list(plan))
    raise TypeError(f"plan: expected a BlockSkipPlan, dict, JSON path or list of windows, got {type(plan).__name__}")


class BlockSkipHandle:
    """The applied plan: a context manager; `.remove()` restores the original forwards."""

    def __init__(self, target, plan, scheduler=None):
        self.pipe, self.unet = resolve(target)
        self.plan = as_plan(plan)
        valid = block_components(self.unet)
        for w in self.plan.windows:
            if w.component not in valid:
                raise ValueError(f"plan: component {w.component!r} is not in this UNet; valid: {', '.join(valid)}")
        scheduler = self.pipe.scheduler if self.pipe is not None else scheduler
        if scheduler is None:
            raise ValueError("scheduler: required for a bare UNet (steps are counted from scheduler.set_timesteps/step)")
        claim(self.unet, KIND)
        self.cache: dict[str, object] = {}
        self.calls_skipped = 0
        self.clock = StepClock(scheduler, on_start=self._start)
        by_component: dict[str, list[SkipWindow]] = {}
        for w in self.plan.windows:
            by_component.setdefault(w.component, []).append(w)
        self._patches = [ForwardPatch(self.unet.get_submodule(c), f"unetlab.{KIND}", self._forward(c, ws))
                         for c, ws in by_component.items()]

    def _start(self) -> None:
        n = self.plan.num_inference_steps
        if n is not None and self.clock.num_steps != n:
            raise ValueError(f"num_inference_steps: the plan was made for {n} steps, the call uses {self.clock.num_steps}")
        self.cache.clear()

    def _forward(self, component: str, windows: list[SkipWindow]):
        def forward(original, *args, **kwargs):
            step = self.clock.step_index
            active = next((w for w in windows if step in w), None)
            if active is not None and component in self.cache:
                self.calls_skipped += 1
                out = self.cache[component]
                return map_tensors(out, torch.zeros_like) if active.replace == "zeros" else out
            out = original(*args, **kwargs)
            self.cache[component] = out
            return out
        return forward

    def remove(self) -> None:
        if self._patches is None:
            return
        for p in self._patches:
            p.remove()
        self.clock.remove()
        self._patches, self.cache = None, {}
        release(self.unet, KIND)

    def __enter__(self) -> "BlockSkipHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def block_skip(pipe_or_unet, plan, scheduler=None) -> BlockSkipHandle:
    """Skip the plan's blocks inside their step windows; returns a removable handle (also a context manager)."""
    return BlockSkipHandle(pipe_or_unet, plan, scheduler)
