"""The rows `unetlab bench` compares. A row is a family, a name and a `Recipe` (a step count, the baseline's solver
and a stack of accelerator configs), or the reason it cannot run on the model; its `config` column is
`recipe.to_dict()`, which `unetlab.accelerate(pipe, config)` applies exactly as the bench did.

`specs(...)` lists the rows by the names `--method` selects, before any model is loaded; `build(spec, ctx)` makes
a spec's row for one model (the learned Clockwork adaptor and the shipped presets depend on it). The
fewer-steps rows, made once the other rows' FLOPs are known, are `fewer_steps` and `unrunnable_solver`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..accel import (
    BlockSkipConfig,
    BlockSkipPlan,
    BranchCacheConfig,
    ClockworkConfig,
    DeepCacheConfig,
    EncoderPropagationConfig,
    GuidanceReuseConfig,
    PABConfig,
    TaylorSeerConfig,
    TGateConfig,
    ToMeConfig,
)
from ..accel.config import AccelConfig
from ..accel.registry import kinds
from ..recipes import Recipe
from ..recipes.solver import Solver

# The bench's own families around each accelerator's (its config's `family`, in the stacking table's order).
FAMILIES = (
    "baseline",
    "fewer-steps",
    *dict.fromkeys(cls.family for cls in kinds().values()),
    "combination",
    "tuned",
)
PRESETS = ("fast", "balanced")  # the tuned rows: the shipped presets of the model's family
LEARNED_CLOCKWORK = "clockwork clock=2 learned adaptor"  # the row's name before the model (and its adaptor) is known


@dataclass(frozen=True)
class Row:
    """One row: `recipe` (None where there is none to run) and `unsupported`, the reason it cannot run here."""

    family: str
    name: str
    recipe: Recipe | None = None
    unsupported: str | None = None
    user_input: str | None = None  # the option that configured it: a failure is the user's error, not "unsupported"

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family: {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.recipe is None and self.unsupported is None:
            raise ValueError(f"row {self.name!r}: give a recipe or the reason it cannot run")


@dataclass(frozen=True)
class Context:
    """What a row depends on: the model's UNet, the bench's step count and baseline solver, its guidance scale and
    the seeds it samples (a preset tuned on any of them is refused)."""

    unet: object
    steps: int
    solver: Solver
    guidance_scale: float | None = None
    seeds: range = range(0)


@dataclass(frozen=True)
class Spec:
    """A row by the name `--method` selects; `make(ctx)` builds it for one model."""

    family: str
    name: str
    make: Callable[[Context], Row]


def reason(err: Exception) -> str:
    """The one-line reason of an unsupported row: the exception's class and the first line of its message."""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _fits(cfg, unet) -> str | None:
    """Why a reuse config does not fit `unet` (its deep path does not exist there), or None."""
    if not hasattr(cfg, "deep"):
        return None
    try:
        cfg.deep(unet)
    except ValueError as err:
        return reason(err)
    return None


def row(ctx: Context, family: str, name: str, *configs, steps: int | None = None, user_input: str | None = None) -> Row:
    """The row of `configs` applied in order at `steps` (the bench's by default) with the baseline's solver."""
    recipe = Recipe(steps or ctx.steps, ctx.solver, configs)
    why = next((r for r in (_fits(c, ctx.unet) for c in configs) if r is not None), None)
    return Row(family, name, recipe, why, user_input)


def _static(family: str, name: str, *configs, steps: int | None = None) -> Spec:
    return Spec(family, name, lambda ctx: row(ctx, family, name, *configs, steps=steps))


def _single(cfg: AccelConfig, name: str | None = None) -> Spec:
    """The row of one config: its family, and its label unless `name` says what the fields cannot (a schedule's
    origin)."""
    return _static(cfg.family, name or cfg.label(), cfg)


def _learned_clockwork(ctx: Context) -> Row:
    """Clockwork with the adaptor shipped for the model; unsupported for the others."""
    from ..accel.clockwork_adaptor import shipped_adaptor_for

    try:
        adaptor = shipped_adaptor_for(ctx.unet)
    except ValueError as err:
        return Row(ClockworkConfig.family, LEARNED_CLOCKWORK, None, reason(err))
    cfg = ClockworkConfig(clock=2, adaptor=adaptor)
    return row(ctx, cfg.family, cfg.label(), cfg)


def _tuned(preset_name: str) -> Spec:
    """The shipped preset `preset_name` of the model's family, measured on the bench's seeds; unsupported when no
    preset fits, when it was tuned against another solver, step count or guidance scale, or on the bench's seeds."""

    def make(ctx: Context) -> Row:
        from ..recipes.presets import family, preset

        if family(ctx.unet) is None:
            return Row("tuned", f"tuned: {preset_name}", None, "no shipped preset fits this UNet (run `unetlab tune`)")
        recipe = preset(preset_name, ctx.unet)
        t = recipe.tuned_on
        seen = set(t.get("calibration_seeds", [])) | set(t.get("validation_seeds", []))
        tuned_against = Solver.from_dict(t.get("baseline_scheduler", "DDIMScheduler"))  # presets before solvers: DDIM
        g, w = t.get("guidance_scale"), ctx.guidance_scale
        why = None
        if tuned_against != ctx.solver:
            why = f"the preset was tuned against a {tuned_against.label} baseline, the bench runs {ctx.solver.label}"
        elif t.get("baseline_steps", ctx.steps) != ctx.steps:
            why = f"the preset was tuned against a {t['baseline_steps']}-step baseline, the bench runs {ctx.steps}"
        elif g is not None and w is not None and g != w:
            why = f"the preset was tuned at guidance {g}, the bench samples at {w}"
        elif seen & set(ctx.seeds):
            why = f"the bench's seeds {min(seen & set(ctx.seeds))}.. are among the seeds the preset was tuned on"
        return Row("tuned", f"tuned: {preset_name} ({t.get('budget') or 'speed only'})", recipe, why)

    return Spec("tuned", f"tuned: {preset_name}", make)


def _read_json(path: str | Path, option: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option}: no such file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{option}: {path} is not valid JSON ({err})") from None


def _check_key_steps(path: str | Path, steps: int) -> None:
    """Raise ValueError unless `path` is a key-step schedule for `steps` sampling steps."""
    from ..schedules import resolve

    _read_json(path, "--key-steps")
    try:
        resolve(Path(path), steps)
    except ValueError as err:
        raise ValueError(f"--key-steps: {err}") from None


def _load_plan(path: str | Path, steps: int) -> BlockSkipPlan:
    """The block-skip plan at `path`, checked to fit `steps` sampling steps."""
    data = _read_json(path, "--block-skip-plan")
    try:
        plan = BlockSkipPlan.from_dict(data if isinstance(data, dict) else {})
    except (ValueError, TypeError) as err:
        raise ValueError(f"--block-skip-plan: {path}: {err}") from None
    if plan.num_inference_steps not in (None, steps):
        raise ValueError(
            f"--block-skip-plan: {path} was made for {plan.num_inference_steps} steps, the benchmark "
            f"runs {steps} (--steps)"
        )
    return plan


def _user_row(cls: type[AccelConfig], name: str, option: str, missing: str, config) -> Spec:
    """A row configured by a file the user gave (`config`), or unsupported with `missing` when none was given."""
    family = cls.family
    if config is None:
        return Spec(family, name, lambda ctx: Row(family, name, None, missing))
    return Spec(family, name, lambda ctx: row(ctx, family, name, config, user_input=option))


def _early_dense(steps: int, late: int) -> list[int]:
    """Full steps every 2 steps up to step 12, then every `late` steps: chosen on `shapes` with seeds 1000-1007,
    held out from the bench's quality images (seeds 0 to num_images - 1)."""
    return [*range(0, min(13, steps), 2), *range(12 + late, steps, late)]


def _forecast_specs(steps: int) -> list[Spec]:
    """Forecasting (`reuse="taylor1"`/`"taylor2"`) next to the copying rows of the same settings."""
    ep = dict(noise_injection=None)
    layer = dict(branch=0, granularity="layer")
    table: list[tuple[str | None, Callable[..., AccelConfig], dict[str, Any], tuple[str, ...]]] = [
        (None, BranchCacheConfig, dict(layer, interval=3), ("taylor2",)),
        (None, BranchCacheConfig, dict(layer, interval=5), ("taylor1", "taylor2")),
        (None, BranchCacheConfig, dict(interval=2, branch=0), ("taylor1",)),
        *(
            (
                f"branch cache layer every 2 to 12 then {late}",
                BranchCacheConfig,
                dict(layer, schedule=tuple(_early_dense(steps, late))),
                ("copy", "taylor1"),
            )
            for late in (6, 8)
        ),
        (None, ClockworkConfig, dict(clock=2), ("taylor1", "taylor2")),
        (None, ClockworkConfig, dict(clock=4), ("taylor1",)),
        (None, EncoderPropagationConfig, dict(ep, key_steps="paper"), ("taylor1", "taylor2")),
        (None, EncoderPropagationConfig, dict(ep, key_steps="uniform:2"), ("taylor1",)),
        (None, EncoderPropagationConfig, dict(ep, key_steps="uniform:4"), ("taylor1", "taylor2")),
    ]
    return [
        _single(cls(**cfg, reuse=reuse), name and (name if reuse == "copy" else f"{name} {reuse}"))
        for name, cls, cfg, modes in table
        for reuse in modes
    ]


def _peer_specs(steps: int) -> list[Spec]:
    """T-GATE (its SD setting: gate at step 10 of 25, scaled to `steps`) with its control row, guidance dropped at
    the same step without caching, and diffusers' Pyramid Attention Broadcast and TaylorSeer hooks on the UNet."""
    gate = max(1, round(0.4 * steps))
    return [
        _single(TGateConfig(gate_step=gate, sp_interval=5, fi_interval=1, warm_up=2)),
        _single(
            GuidanceReuseConfig(interval=1, stop_after=(gate - 0.5) / steps),
            f"guidance dropped from step {gate} (T-GATE's control, no caching)",
        ),
        _single(PABConfig(spatial=2, cross=4, timestep_range=(100, 800))),
        _single(TaylorSeerConfig(interval=5, order=1, warm_up=3)),
    ]


def specs(
    steps: int = 50,
    key_steps: str | Path | None = None,
    block_skip_plan: str | Path | None = None,
    quick: bool = False,
    baseline: str = "DDIM",
) -> list[Spec]:
    """The baseline (`baseline`'s label, e.g. "DPM++", at `steps`), the accelerators with their published or
    recommended settings, the tuned presets, and the rows of a derived schedule or plan the user gave (checked to
    fit `steps`)."""
    ep_paper = EncoderPropagationConfig(key_steps="paper", noise_injection=None)
    ep_u2 = EncoderPropagationConfig(key_steps="uniform:2", noise_injection=None)
    bc2 = BranchCacheConfig(interval=2, branch=0)
    tome = ToMeConfig(ratio=0.5)
    out = [
        _static("baseline", f"{baseline}-{steps}"),
        _single(ep_paper),
        _single(EncoderPropagationConfig(key_steps="paper", noise_injection=None, parallel=False)),
        _single(ep_u2),
        _single(EncoderPropagationConfig(key_steps="uniform:4", noise_injection=None)),
        _single(bc2),
        _single(BranchCacheConfig(interval=3, granularity="layer")),
        _single(BranchCacheConfig(interval=5, granularity="layer")),
        _single(BranchCacheConfig(interval=3, granularity="layer", reuse="taylor1")),
        _single(ClockworkConfig(clock=2)),
        Spec(ClockworkConfig.family, LEARNED_CLOCKWORK, _learned_clockwork),
        _single(DeepCacheConfig(interval=3, branch=0)),
        _single(tome),
        *_peer_specs(steps),
        _static("combination", "EP paper + tomesd 0.5", ep_paper, tome),
        _static("combination", "EP uniform:2 + branch cache N=2", ep_u2, bc2),
        _single(GuidanceReuseConfig(interval=2)),
        _static("combination", "branch cache N=2 B=0 + guidance reuse N=2", bc2, GuidanceReuseConfig(interval=2)),
        *(
            _static(
                "combination",
                f"{baseline}-{k} + branch cache N=2 layer",
                BranchCacheConfig(interval=2, granularity="layer"),
                steps=k,
            )
            for k in sorted({max(2, round(steps * f)) for f in (0.5, 0.4)}, reverse=True)
        ),
    ]
    if not quick:
        out += [
            _single(BranchCacheConfig(interval=3, branch=0)),
            _single(BranchCacheConfig(interval=4, granularity="layer")),
            _single(BranchCacheConfig(interval=3, branch=1)),
            _single(ClockworkConfig(clock=4)),
            _single(GuidanceReuseConfig(interval=3)),
            *_forecast_specs(steps),
        ]
    out += [_tuned(p) for p in PRESETS]
    if key_steps is not None:
        _check_key_steps(key_steps, steps)
    out.append(
        _user_row(
            EncoderPropagationConfig,
            "EP derived keys",
            "--key-steps",
            "no derived schedule: run `unetlab analyze derive` and pass --key-steps",
            None if key_steps is None else EncoderPropagationConfig(key_steps=str(key_steps), noise_injection=None),
        )
    )
    out.append(
        _user_row(
            BlockSkipConfig,
            "block skip (ablation plan)",
            "--block-skip-plan",
            "no block-skip plan: run `unetlab analyze derive` and pass --block-skip-plan",
            None if block_skip_plan is None else BlockSkipConfig(_load_plan(block_skip_plan, steps)),
        )
    )
    return out


def default_rows(
    unet,
    steps: int = 50,
    solver: Solver | None = None,
    quick: bool = False,
    key_steps: str | Path | None = None,
    block_skip_plan: str | Path | None = None,
    guidance_scale: float | None = None,
    seeds: range = range(0),
) -> list[Row]:
    """Every row of `specs` built for `unet` against `solver` (default DDIM as the pipeline has it)."""
    ctx = Context(unet, steps, solver or Solver("DDIMScheduler"), guidance_scale, seeds)
    return [s.make(ctx) for s in specs(steps, key_steps, block_skip_plan, quick, ctx.solver.label)]


def fewer_steps(n: int, solver: Solver) -> Row:
    """`solver` alone at `n` steps (the honest alternative at matched UNet FLOPs)."""
    return Row("fewer-steps", f"{solver.label}-{n}", Recipe(n, solver))


def unrunnable_solver(solver: Solver, steps: int, why: str) -> Row:
    """The one fewer-steps row of a solver the pipeline cannot step with, and why."""
    return Row("fewer-steps", f"{solver.label} (fewer steps)", Recipe(steps, solver), why)
