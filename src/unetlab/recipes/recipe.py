"""A recipe: a step count, a scheduler and a stack of accelerator configs, saved as one JSON document.

    {"kind": "unetlab.recipe", "version": 1,
     "num_inference_steps": 25,
     "scheduler": {"class_name": "DPMSolverMultistepScheduler", "config": {"algorithm_type": "dpmsolver++", ...}},
     "accelerators": [{"kind": "unetlab.encoder_propagation", ...}, {"kind": "unetlab.branch_cache", ...}],
     "tuned_on": {"model": "shapes", "guidance_scale": 5.0, "budget": "psnr>=38", "speedup_wall": 3.1, ...}}

`scheduler` is a `solver.Solver`: a class name and the config fields that differ from the pipeline's scheduler
(written as the class name alone when none does, as every recipe before solvers were searched; both load).
`accelerators` are the configs of `unetlab.accel` (their `to_dict()`), in an order the stacking table
(`accel/stacking.py`) allows; `tuned_on` says what the recipe was measured on (empty for a hand-written one).
Every check names the field it refuses, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..accel import stacking
from ..accel.config import AccelConfig, check_version, in_file
from ..accel.registry import load_config
from ..atomic import write_json
from .solver import Solver

KIND = "unetlab.recipe"
FIELDS = ("num_inference_steps", "scheduler", "accelerators", "tuned_on")


def check_order(kinds: list[str]) -> None:
    """Raise unless every accelerator may be applied after each one before it (the stacking table)."""
    for j, later in enumerate(kinds):
        for earlier in kinds[:j]:
            if earlier == later:
                raise ValueError(f"recipe: accelerators: {later} appears twice (one handle per kind)")
            if (earlier, later) not in stacking.COMPOSE:
                raise ValueError(
                    f"recipe: accelerators: {later} after {earlier} is not a valid stacking order; "
                    "valid: " + ", ".join(f"{a} then {b}" for a, b in sorted(stacking.COMPOSE))
                )


def _check_steps(cfg: AccelConfig, n: int, i: int) -> None:
    """A config made for a step count (a block-skip plan, a key-step file, explicit full steps) must fit `n`."""
    try:
        cfg.check_steps(n)
    except ValueError as err:
        raise ValueError(f"recipe: accelerators[{i}] ({cfg.kind}): {err} (num_inference_steps is {n})") from None


@dataclass(frozen=True)
class Recipe:
    """`num_inference_steps` steps of `scheduler` (a `Solver`, its dict or a class name) with `accelerators` applied
    in order."""

    num_inference_steps: int
    scheduler: Solver
    accelerators: tuple = ()
    tuned_on: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        n = self.num_inference_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"recipe: num_inference_steps: expected an int >= 1, got {n!r}")
        object.__setattr__(self, "scheduler", Solver.from_dict(self.scheduler))
        if not isinstance(self.accelerators, (list, tuple)):
            raise ValueError(
                f"recipe: accelerators: expected a list of accelerator configs, got {type(self.accelerators).__name__}"
            )
        configs = []
        for i, a in enumerate(self.accelerators):
            if isinstance(a, AccelConfig):
                configs.append(a)
                continue
            if not isinstance(a, dict):
                raise ValueError(f"recipe: accelerators[{i}]: expected a config dict, got {type(a).__name__}")
            try:
                configs.append(load_config(a))
            except (ValueError, TypeError) as err:
                raise ValueError(f"recipe: accelerators[{i}]: {' '.join(str(err).split())}") from None
        check_order([c.kind for c in configs])
        for i, c in enumerate(configs):
            _check_steps(c, n, i)
        object.__setattr__(self, "accelerators", tuple(configs))
        if not isinstance(self.tuned_on, dict):
            raise ValueError(f"recipe: tuned_on: expected a dict, got {type(self.tuned_on).__name__}")

    def to_dict(self) -> dict:
        return {
            "kind": KIND,
            "version": 1,
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler.to_dict(),
            "accelerators": [c.to_dict() for c in self.accelerators],
            "tuned_on": self.tuned_on,
        }

    @classmethod
    def from_dict(cls, d) -> Recipe:
        if not isinstance(d, dict):
            raise ValueError(f"recipe: expected a JSON object, got {type(d).__name__}")
        if d.get("kind", KIND) != KIND:
            raise ValueError(f"recipe: kind: expected {KIND!r}, got {d.get('kind')!r}")
        check_version(d, "recipe")
        unknown = sorted(set(d) - set(FIELDS) - {"kind", "version"})
        if unknown:
            raise ValueError(f"recipe: unknown field(s) {', '.join(unknown)}; valid: {', '.join(FIELDS)}")
        missing = [k for k in FIELDS[:3] if k not in d]
        if missing:
            raise ValueError(f"recipe: {missing[0]}: missing (a recipe has {', '.join(FIELDS)})")
        return cls(d["num_inference_steps"], d["scheduler"], d["accelerators"], d.get("tuned_on", {}))

    def save(self, path) -> Path:
        """Write the recipe as JSON atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> Recipe:
        return in_file(cls.from_dict, path, "recipe")
