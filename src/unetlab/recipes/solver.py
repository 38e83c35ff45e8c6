"""The solver of a recipe: a diffusers scheduler class and the config fields it sets differently from the pipeline's.

A `Solver` is built from the pipeline's own scheduler config (betas, timestep spacing and prediction type kept),
with its `config` fields set on top: `DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, **config)`.
Named solvers (`NAMED`) pin the options that decide what they compute, so that a pipeline whose scheduler already
has another setting (an SDE variant, order 3) does not leak it in:

- `ddim`: `DDIMScheduler`, the pipeline's config as it is;
- `dpm++` (alias `dpm`): DPM-Solver++ (Lu et al. 2022), multistep, order 2 ("2M"), midpoint update, first-order
  final step; `unipc`: UniPC (Zhao et al. 2023), order 2, B(h) = e^h - 1 ("bh2"), data prediction, first-order final
  step. Both threshold x0 dynamically (Saharia et al. 2022: clip at the 99.5th percentile of |x0|, at least 1)
  where the model samples pixels (the pipeline has no `vae`), and not where it samples latents;
- the other short names map to their classes with the pipeline's config.

`resolve(name, pipe)` keeps only the fields that differ from the pipeline's scheduler config, which is what a
recipe stores (`Solver.to_dict()`); a solver with no such fields is written as its class name alone, as recipes
always were.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

DPM = {
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "solver_type": "midpoint",
    "lower_order_final": True,
    "use_karras_sigmas": False,
}
UNIPC = {
    "solver_order": 2,
    "solver_type": "bh2",
    "predict_x0": True,
    "lower_order_final": True,
    "use_karras_sigmas": False,
}
NAMED = {
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", DPM),
    "dpm": ("DPMSolverMultistepScheduler", DPM),
    "unipc": ("UniPCMultistepScheduler", UNIPC),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
}
THRESHOLDED = ("dpm++", "dpm", "unipc")  # dynamic thresholding where the model samples pixels
LABELS = {
    "DDIMScheduler": "DDIM",
    "DPMSolverMultistepScheduler": "DPM++",
    "UniPCMultistepScheduler": "UniPC",
    "DDPMScheduler": "DDPM",
    "PNDMScheduler": "PNDM",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "EulerA",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
}


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class called `name` (e.g. "DDIMScheduler"); a one-line error otherwise."""
    import diffusers
    from diffusers import SchedulerMixin

    cls = getattr(diffusers, name, None) if isinstance(name, str) and name.endswith("Scheduler") else None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(
            f"recipe: scheduler: {name!r} is not a diffusers scheduler class name "
            "(e.g. 'DDIMScheduler', 'DPMSolverMultistepScheduler')"
        )
    return cls


@dataclass(frozen=True)
class Solver:
    """`class_name` (a diffusers scheduler class) built from the pipeline's scheduler config with `config` set."""

    class_name: str
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        cls = scheduler_class(self.class_name)
        if not isinstance(self.config, dict):
            raise ValueError(
                f"recipe: scheduler: config: expected an object of config fields, got {type(self.config).__name__}"
            )
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        for k, v in self.config.items():
            if k not in known:
                raise ValueError(
                    f"recipe: scheduler: config: {k!r} is not a config field of {self.class_name} "
                    f"(e.g. {', '.join(sorted(known)[:4])})"
                )
            try:
                json.dumps(v, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"recipe: scheduler: config: {k}: expected a JSON value, got {v!r}") from None
        object.__setattr__(self, "config", dict(sorted(self.config.items())))

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        return json.dumps([self.class_name, self.config], sort_keys=True)

    @property
    def label(self) -> str:
        """A short name for tables: DDIM, DPM++, UniPC, ... or the class name."""
        return label(self.class_name)

    def to_dict(self):
        """The class name alone when no field differs, else `{"class_name": ..., "config": {...}}`."""
        return self.class_name if not self.config else {"class_name": self.class_name, "config": dict(self.config)}

    @classmethod
    def from_dict(cls, d) -> Solver:
        if isinstance(d, Solver):
            return d
        if isinstance(d, str):
            return cls(d)
        if not isinstance(d, dict):
            raise ValueError(
                f'recipe: scheduler: expected a class name or {{"class_name", "config"}}, got {type(d).__name__}'
            )
        unknown = sorted(set(d) - {"class_name", "config"})
        if unknown or "class_name" not in d:
            raise ValueError(f"recipe: scheduler: expected the fields class_name and config, got {sorted(d)}")
        return cls(d["class_name"], d.get("config", {}))

    def matches(self, scheduler) -> bool:
        """Whether `scheduler` is already this solver (its class, and every field of `config` as set here)."""
        return type(scheduler).__name__ == self.class_name and all(
            scheduler.config.get(k) == v for k, v in self.config.items()
        )

    def build(self, scheduler):
        """A new scheduler of this class from `scheduler`'s config with `config` set."""
        return scheduler_class(self.class_name).from_config(scheduler.config, **self.config)


def label(name: str) -> str:
    """The table label of a short name or a class name ("dpm++" and "DPMSolverMultistepScheduler": "DPM++")."""
    class_name = NAMED[name.lower()][0] if name.lower() in NAMED else name
    return LABELS.get(class_name, class_name)


def pixel_space(pipe) -> bool:
    """Whether the pipeline samples pixels (it has no `vae` component)."""
    return "vae" not in getattr(pipe, "components", {})


def names() -> str:
    return ", ".join(NAMED)


def resolve(name, pipe) -> Solver:
    """The solver a short name (`NAMED`) or a class name means for `pipe`, keeping only the fields that differ
    from its scheduler's config."""
    if isinstance(name, Solver):
        return name
    key = str(name).lower()
    if key in NAMED:
        class_name, pinned = NAMED[key]
        pinned = {**pinned, **({"thresholding": pixel_space(pipe)} if key in THRESHOLDED else {})}
    else:
        check_name(name)
        class_name, pinned = name, {}
    base = dict(pipe.scheduler.config)
    return Solver(class_name, {k: v for k, v in pinned.items() if k not in base or base[k] != v})


def check_name(name: str, option: str = "--scheduler") -> None:
    """Raise a one-line error unless `name` is a short name (`NAMED`) or a diffusers scheduler class name."""
    if str(name).lower() in NAMED:
        return
    try:
        scheduler_class(name)
    except ValueError:
        raise ValueError(f"{option}: {name!r} is not one of {names()} or a diffusers scheduler class name") from None


def parse_baseline(text: str) -> tuple[str, int]:
    """("dpm++", 25) from "dpm++:25" (SCHEDULER:STEPS); a one-line error naming --baseline otherwise."""
    name, sep, steps = str(text).rpartition(":")
    if not sep or not name:
        raise ValueError(f"--baseline: expected SCHEDULER:STEPS such as ddim:50 or dpm++:25, got {text!r}")
    check_name(name, "--baseline")
    if not steps.isdigit() or int(steps) < 2:
        raise ValueError(f"--baseline: steps: expected an integer >= 2 after the colon, got {steps!r} in {text!r}")
    return name.lower() if name.lower() in NAMED else name, int(steps)


def probe(pipe, solver: Solver, run, base=None) -> str | None:
    """Why `solver` cannot sample with `pipe` (`run()` fails with it swapped in; e.g. diffusers' `DDIMPipeline` passes
    DDIM's own step arguments), or None when it can."""
    swap = SchedulerSwap(pipe, solver, base)
    try:
        run()
    except (TypeError, ValueError) as err:  # e.g. the pipeline passes its own scheduler's step arguments
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        swap.remove()
    return None


class SchedulerSwap:
    """`pipe.scheduler` replaced by `solver.build(base or pipe.scheduler)` until `.remove()`."""

    def __init__(self, pipe, solver: Solver, base=None):
        self.pipe, self.original = pipe, pipe.scheduler
        pipe.scheduler = solver.build(base if base is not None else self.original)

    def remove(self) -> None:
        if self.pipe is not None:
            self.pipe.scheduler, self.pipe = self.original, None
