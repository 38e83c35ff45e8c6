"""The bench's "tuned" rows: the shipped preset recipes (`unetlab.recipes.presets`), one row per preset, i.e.
per budget, applied with `unetlab.accelerate` and measured like every other row on the bench's own seeds.

A row is "unsupported", with the reason, when no preset fits the model, when the preset was tuned for another
baseline solver, step count or guidance scale, or when the bench's seeds are among those the tuner saw."""

from __future__ import annotations

PRESETS = ("fast", "balanced")


def placeholders(steps: int):
    """One row per preset, resolved for each model by `resolve`."""
    from .bench_methods import Method

    return [Method("tuned", f"tuned: {p}", {"preset": p}, steps) for p in PRESETS]


def resolve(m, w, steps: int, seeds: range, solver) -> None:
    """Fill in the preset row `m` for workload `w` benched against `solver` at `steps`: the recipe, its steps and
    name, or the reason it cannot run."""
    from ..recipes import accelerate
    from ..recipes.presets import family, preset
    from ..recipes.solver import Solver

    fam = family(w.unet)
    if fam is None:
        m.unsupported = "no shipped preset fits this UNet (run `unetlab tune`)"
        return
    recipe = preset(m.config["preset"], w.unet)
    t = recipe.tuned_on
    m.config = {"preset": f"{fam}:{m.config['preset']}", "budget": t.get("budget"), **recipe.to_dict()}
    m.name = f"tuned: {m.config['preset'].split(':')[1]} ({t.get('budget') or 'speed only'})"
    m.steps = recipe.num_inference_steps
    seen = set(t.get("calibration_seeds", [])) | set(t.get("validation_seeds", []))
    tuned_against = Solver.from_dict(t.get("baseline_scheduler", "DDIMScheduler"))  # presets before solvers: DDIM
    if tuned_against != solver:
        m.unsupported = f"the preset was tuned against a {tuned_against.label} baseline, the bench runs {solver.label}"
    elif t.get("baseline_steps", steps) != steps:
        m.unsupported = f"the preset was tuned against a {t['baseline_steps']}-step baseline, the bench runs {steps}"
    elif (
        t.get("guidance_scale") is not None and w.guidance_scale is not None and t["guidance_scale"] != w.guidance_scale
    ):
        m.unsupported = (
            f"the preset was tuned at guidance {t['guidance_scale']}, the bench samples at {w.guidance_scale}"
        )
    elif seen & set(seeds):
        m.unsupported = f"the bench's seeds {min(seen & set(seeds))}.. are among the seeds the preset was tuned on"
    else:
        m.apply = lambda pipe: [accelerate(pipe, recipe)]
