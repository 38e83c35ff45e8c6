"""Block skipping: do not run chosen UNet blocks inside chosen step windows (Prasad et al. 2023, arXiv 2312.14965).

A plan lists (component, start, end, replace) windows over the steps a pipeline call runs. Inside a window the
component's `forward` is replaced (through diffusers' HookRegistry) and never called: its output is a copy of
the one cached at the last step where it ran in this pipeline call, in the same call slot and with the same
inputs ("cached"), or zeros of that shape ("zeros"). A component with no such cache runs to fill it (the first
step, a batch or conditioning change). Plans are JSON; `unetlab analyze derive` writes them from an ablation grid.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..atomic import write_json
from ..patching import ForwardPatch
from .config import AccelConfig, check_version, in_file
from .handle import Accelerator, Call
from .side_state import holders, map_tensors, restore, snapshot

KIND = "block_skip"
REPLACES = ("cached", "zeros")
_COMPONENT = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)$")


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
            raise ValueError(
                f"component: {self.component!r} is not a block name (down_blocks.i, mid_block, up_blocks.j)"
            )
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

    def __post_init__(self) -> None:
        self.windows = [w if isinstance(w, SkipWindow) else SkipWindow(**w) for w in self.windows]
        by_component: dict[str, list[SkipWindow]] = {}
        for w in self.windows:
            by_component.setdefault(w.component, []).append(w)
        for name, ws in by_component.items():
            ws = sorted(ws, key=lambda w: w.start)
            for a, b in zip(ws, ws[1:]):
                if b.start < a.end:
                    raise ValueError(
                        f"windows: {name} has overlapping windows [{a.start}, {a.end}) and [{b.start}, {b.end})"
                    )
        if self.num_inference_steps is not None:
            late = [w for w in self.windows if w.end > self.num_inference_steps]
            if late:
                raise ValueError(f"windows: {late[0]} ends after num_inference_steps={self.num_inference_steps}")

    def to_dict(self) -> dict:
        return {
            "kind": "unetlab.block_skip",
            "version": 1,
            "num_inference_steps": self.num_inference_steps,
            "windows": [asdict(w) for w in self.windows],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BlockSkipPlan:
        if d.get("kind") != "unetlab.block_skip":
            raise ValueError(f"plan: expected kind 'unetlab.block_skip', got {d.get('kind')!r}")
        check_version(d, "plan")
        return cls(d.get("windows", []), d.get("num_inference_steps"), d.get("meta", {}))

    def save(self, path) -> Path:
        """Write the plan as JSON atomically (temporary file, then rename)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> BlockSkipPlan:
        return in_file(cls.from_dict, path, "plan")


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


@dataclass(frozen=True)
class BlockSkipConfig(AccelConfig):
    """`plan`: a `BlockSkipPlan` (or its dict, a JSON path, or a list of windows)."""

    kind = KIND
    family = "block-skip"
    plan: BlockSkipPlan = field(default_factory=BlockSkipPlan)

    def __post_init__(self):
        object.__setattr__(self, "plan", as_plan(self.plan))

    def apply_to(self, target) -> BlockSkip:
        return BlockSkip(target, self)

    def check_steps(self, num_steps: int) -> None:
        """Raise when the plan was made for another step count."""
        if self.plan.num_inference_steps not in (None, num_steps):
            raise ValueError(f"the plan was made for {self.plan.num_inference_steps} steps")

    def label(self) -> str:
        """Row name: "block skip (<n> windows)"."""
        return f"block skip ({len(self.plan.windows)} windows)"


class BlockSkip(Accelerator):
    """The applied plan: a context manager; `.remove()` restores the original forwards."""

    kind = KIND

    def __init__(self, target, config: BlockSkipConfig, scheduler=None):
        super().__init__(target, config, scheduler)

    @property
    def plan(self) -> BlockSkipPlan:
        return self.config.plan

    def install(self) -> None:
        valid = block_components(self.unet)
        for w in self.plan.windows:
            if w.component not in valid:
                raise ValueError(f"plan: component {w.component!r} is not in this UNet; valid: {', '.join(valid)}")
        if self.clock is None:
            raise ValueError(
                "scheduler: required for a bare UNet (steps are counted from scheduler.set_timesteps/step)"
            )
        self.calls_skipped = 0
        self._windows: dict[str, list[SkipWindow]] = {}
        for w in self.plan.windows:
            self._windows.setdefault(w.component, []).append(w)
        for c in self._windows:
            module = self.unet.get_submodule(c)
            self._add(ForwardPatch(module, f"unetlab.{KIND}", self._component(c, holders([module]))))

    def start(self, run) -> None:
        n = self.plan.num_inference_steps
        if n is not None and run.num_steps is not None and run.num_steps != n:
            raise ValueError(f"num_inference_steps: the plan was made for {n} steps, the call runs {run.num_steps}")

    def clear(self) -> None:
        self.cache: dict[tuple[int, str], tuple] = {}  # (slot, component) -> (output, processor state)
        self._skip: dict[str, str] | None = None  # this UNet call's skipped components -> replace
        self._slot = 0

    def forward(self, original, call: Call, args, kwargs):
        """Decide here, per call, which components are skipped: a compiled UNet's graph then depends only on that
        decision (never on the step index)."""
        if not call.fresh:  # first call of its slot, or new inputs: every block runs and refreshes its cache
            self.mark_full(call)
        skip = {}
        for c, windows in self._windows.items():
            active = next((w for w in windows if call.step in w), None)
            if active is not None and call.fresh and (call.slot, c) in self.cache:
                skip[c] = active.replace
        self._skip, self._slot = skip, call.slot
        self.calls_skipped += len(skip)
        try:
            return original(*args, **kwargs)
        finally:
            self._skip = None
            self.calls.append((call.step, not skip))

    def _component(self, component: str, attention):
        def forward(original, *args, **kwargs):
            skip = self._skip
            if skip is None:  # called outside the UNet's forward (by the pipeline itself)
                return original(*args, **kwargs)
            replace, key = skip.get(component), (self._slot, component)
            if replace is not None:
                out, kept = self.cache[key]
                restore(kept)
                return map_tensors(out, torch.zeros_like if replace == "zeros" else torch.clone)
            out = original(*args, **kwargs)
            self.cache[key] = (out, snapshot(attention))
            return out

        return forward


def block_skip(pipe_or_unet, plan, scheduler=None) -> BlockSkip:
    """Skip the plan's blocks inside their step windows; returns a removable handle (also a context manager)."""
    return BlockSkip(pipe_or_unet, BlockSkipConfig(plan), scheduler)
