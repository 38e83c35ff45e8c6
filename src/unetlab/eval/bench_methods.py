"""The methods `unetlab bench` compares: each is a family, a config, a step count and how to apply it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = (
    "baseline",
    "fewer-steps",
    "encoder-propagation",
    "branch-cache",
    "clockwork",
    "block-skip",
    "guidance-reuse",
    "deepcache",
    "tome",
    "tgate",
    "pab",
    "taylorseer",
    "combination",
    "tuned",
)


@dataclass
class Method:
    """One benchmark row: `apply(pipe)` returns the handles to remove afterwards (empty for plain sampling)."""

    family: str
    name: str
    config: dict = field(default_factory=dict)
    steps: int = 50
    apply: Callable[[object], list] | None = None
    unsupported: str | None = None  # the reason, when the method cannot run on this model
    user_input: str | None = None  # the option that configured it: a failure is the user's error, not "unsupported"

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family: {self.family!r} is not one of {', '.join(FAMILIES)}")


def applied(method: Method, pipe, fn):
    """`fn()` with `method` applied to `pipe`, its handles removed afterwards (in reverse order)."""
    handles = method.apply(pipe) if method.apply else []
    try:
        return fn()
    finally:
        for h in reversed(handles):
            h.remove()


def _ep(**cfg):
    def apply(pipe):
        from ..accel.encoder_propagation import encoder_propagation

        return [encoder_propagation(pipe, **cfg)]

    return apply


def _bc(**cfg):
    def apply(pipe):
        from ..accel.branch_cache import branch_cache

        return [branch_cache(pipe, **cfg)]

    return apply


def _cw(**cfg):
    def apply(pipe):
        from ..accel.clockwork import clockwork

        return [clockwork(pipe, **cfg)]

    return apply


def _cw_shipped(**cfg):
    """Clockwork with the learned adaptor shipped for the model (an unsupported row for other models)."""

    def apply(pipe):
        from ..accel.clockwork import clockwork
        from ..accel.clockwork_adaptor import shipped_adaptor_for

        return [clockwork(pipe, adaptor=shipped_adaptor_for(pipe.unet), **cfg)]

    return apply


def _gr(**cfg):
    """Guidance reuse (an unsupported row, with its one-line refusal, on a workload sampled without guidance)."""

    def apply(pipe):
        from ..accel.guidance_reuse import guidance_reuse

        return [guidance_reuse(pipe, **cfg)]

    return apply


def _bs(plan):
    def apply(pipe):
        from ..accel.block_skip import block_skip

        return [block_skip(pipe, plan)]

    return apply


def _peer(kind: str, **cfg):
    def apply(pipe):
        from ..accel import peers

        return [getattr(peers, kind)(pipe, **cfg)]

    return apply


def _chain(*applies):
    def apply(pipe):
        handles = []
        try:
            for a in applies:
                handles += a(pipe)
        except Exception:
            for h in reversed(handles):
                h.remove()
            raise
        return handles

    return apply


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


def _load_plan(path: str | Path, steps: int) -> dict:
    """The block-skip plan at `path` as a dict, checked to be a plan that fits `steps` sampling steps."""
    from ..accel.block_skip import BlockSkipPlan

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
    return data


def _early_dense(steps: int, late: int) -> list[int]:
    """Full steps every 2 steps up to step 12, then every `late` steps: chosen on `shapes` with seeds 1000-1007,
    held out from the bench's quality images (seeds 0 to num_images - 1)."""
    return [*range(0, min(13, steps), 2), *range(12 + late, steps, late)]


def _forecast_rows(steps: int) -> list[Method]:
    """Forecasting (`reuse="taylor1"`/`"taylor2"`) next to the copying rows of the same settings."""
    ep = dict(noise_injection=None)
    layer = dict(branch=0, granularity="layer")
    rows = [
        ("branch-cache", "branch cache N=3 layer", _bc, dict(layer, interval=3), ("taylor2",)),
        ("branch-cache", "branch cache N=5 layer", _bc, dict(layer, interval=5), ("taylor1", "taylor2")),
        ("branch-cache", "branch cache N=2 B=0", _bc, dict(interval=2, branch=0), ("taylor1",)),
        *(
            (
                "branch-cache",
                f"branch cache layer every 2 to 12 then {late}",
                _bc,
                dict(layer, schedule=_early_dense(steps, late)),
                ("copy", "taylor1"),
            )
            for late in (6, 8)
        ),
        ("clockwork", "clockwork clock=2", _cw, dict(clock=2), ("taylor1", "taylor2")),
        ("clockwork", "clockwork clock=4", _cw, dict(clock=4), ("taylor1",)),
        ("encoder-propagation", "EP paper keys, parallel", _ep, dict(ep, key_steps="paper"), ("taylor1", "taylor2")),
        ("encoder-propagation", "EP uniform:2", _ep, dict(ep, key_steps="uniform:2"), ("taylor1",)),
        ("encoder-propagation", "EP uniform:4", _ep, dict(ep, key_steps="uniform:4"), ("taylor1", "taylor2")),
    ]
    return [
        Method(
            family,
            name if reuse == "copy" else f"{name} {reuse}",
            dict(cfg, reuse=reuse),
            steps,
            make(**cfg, reuse=reuse),
        )
        for family, name, make, cfg, modes in rows
        for reuse in modes
    ]


def _peer_rows(steps: int) -> list[Method]:
    """T-GATE (its SD setting: gate at step 10 of 25, scaled to `steps`) with its control row, guidance dropped at
    the same step without caching, and diffusers' Pyramid Attention Broadcast and TaylorSeer hooks on the UNet."""
    gate = max(1, round(0.4 * steps))
    tgate = dict(gate_step=gate, sp_interval=5, fi_interval=1, warm_up=2)
    return [
        Method("tgate", f"T-GATE pkg gate={gate}", tgate, steps, _peer("tgate", **tgate)),
        Method(
            "guidance-reuse",
            f"guidance dropped from step {gate} (T-GATE's control, no caching)",
            dict(interval=1, stop_after=(gate - 0.5) / steps),
            steps,
            _gr(interval=1, stop_after=(gate - 0.5) / steps),
        ),
        Method(
            "pab",
            "PAB (diffusers) spatial 2 cross 4",
            dict(spatial=2, cross=4, timestep_range=[100, 800]),
            steps,
            _peer("pab", spatial=2, cross=4),
        ),
        Method(
            "taylorseer",
            "TaylorSeer (diffusers) N=5 order 1",
            dict(interval=5, order=1, warm_up=3),
            steps,
            _peer("taylorseer", interval=5, order=1, warm_up=3),
        ),
    ]


def default_methods(
    steps: int = 50,
    key_steps_derived: str | Path | None = None,
    block_skip_plan: str | Path | None = None,
    quick: bool = False,
    baseline: str = "DDIM",
) -> list[Method]:
    """The baseline (`baseline`'s label, e.g. "DPM++-25"), the accelerators with their published or recommended
    settings, plus derived schedules when given."""
    ep_paper = dict(key_steps="paper", noise_injection=None)
    methods = [
        Method("baseline", f"{baseline}-{steps}", {"scheduler": baseline}, steps),
        Method("encoder-propagation", "EP paper keys, parallel", dict(ep_paper, parallel=True), steps, _ep(**ep_paper)),
        Method(
            "encoder-propagation",
            "EP paper keys, sequential",
            dict(ep_paper, parallel=False),
            steps,
            _ep(**ep_paper, parallel=False),
        ),
        Method(
            "encoder-propagation",
            "EP uniform:2",
            dict(key_steps="uniform:2", noise_injection=None),
            steps,
            _ep(key_steps="uniform:2", noise_injection=None),
        ),
        Method(
            "encoder-propagation",
            "EP uniform:4",
            dict(key_steps="uniform:4", noise_injection=None),
            steps,
            _ep(key_steps="uniform:4", noise_injection=None),
        ),
        Method("branch-cache", "branch cache N=2 B=0", dict(interval=2, branch=0), steps, _bc(interval=2, branch=0)),
        Method(
            "branch-cache",
            "branch cache N=3 layer",
            dict(interval=3, branch=0, granularity="layer"),
            steps,
            _bc(interval=3, branch=0, granularity="layer"),
        ),
        Method(
            "branch-cache",
            "branch cache N=5 layer",
            dict(interval=5, branch=0, granularity="layer"),
            steps,
            _bc(interval=5, branch=0, granularity="layer"),
        ),
        Method(
            "branch-cache",
            "branch cache N=3 layer taylor1",
            dict(interval=3, branch=0, granularity="layer", reuse="taylor1"),
            steps,
            _bc(interval=3, branch=0, granularity="layer", reuse="taylor1"),
        ),
        Method("clockwork", "clockwork clock=2", dict(clock=2), steps, _cw(clock=2)),
        Method(
            "clockwork",
            "clockwork clock=2 learned adaptor",
            dict(clock=2, adaptor="shipped"),
            steps,
            _cw_shipped(clock=2),
        ),
        Method(
            "deepcache",
            "DeepCache pkg N=3 B=0",
            dict(cache_interval=3, cache_branch_id=0),
            steps,
            _peer("deepcache", interval=3, branch=0),
        ),
        Method("tome", "tomesd ratio=0.5", dict(ratio=0.5), steps, _peer("tome", ratio=0.5)),
        *_peer_rows(steps),
        Method(
            "combination",
            "EP paper + tomesd 0.5",
            dict(ep_paper, tome_ratio=0.5),
            steps,
            _chain(_ep(**ep_paper), _peer("tome", ratio=0.5)),
        ),
        Method(
            "combination",
            "EP uniform:2 + branch cache N=2",
            dict(key_steps="uniform:2", interval=2),
            steps,
            _chain(_ep(key_steps="uniform:2", noise_injection=None), _bc(interval=2, branch=0)),
        ),
        Method("guidance-reuse", "guidance reuse N=2", dict(interval=2), steps, _gr(interval=2)),
        Method(
            "combination",
            "branch cache N=2 B=0 + guidance reuse N=2",
            dict(interval=2, branch=0, guidance_interval=2),
            steps,
            _chain(_bc(interval=2, branch=0), _gr(interval=2)),
        ),
        *(
            Method(
                "combination",
                f"DDIM-{k} + branch cache N=2 layer",
                dict(steps=k, interval=2, granularity="layer"),
                k,
                _bc(interval=2, branch=0, granularity="layer"),
            )
            for k in sorted({max(2, round(steps * f)) for f in (0.5, 0.4)}, reverse=True)
        ),
    ]
    if not quick:
        methods += [
            Method(
                "branch-cache", "branch cache N=3 B=0", dict(interval=3, branch=0), steps, _bc(interval=3, branch=0)
            ),
            Method(
                "branch-cache",
                "branch cache N=4 layer",
                dict(interval=4, branch=0, granularity="layer"),
                steps,
                _bc(interval=4, branch=0, granularity="layer"),
            ),
            Method(
                "branch-cache", "branch cache N=3 B=1", dict(interval=3, branch=1), steps, _bc(interval=3, branch=1)
            ),
            Method("clockwork", "clockwork clock=4", dict(clock=4), steps, _cw(clock=4)),
            Method("guidance-reuse", "guidance reuse N=3", dict(interval=3), steps, _gr(interval=3)),
            *_forecast_rows(steps),
        ]
    from .bench_tuned import placeholders

    methods += placeholders(steps)
    if key_steps_derived is not None:
        _check_key_steps(key_steps_derived, steps)
        methods.append(
            Method(
                "encoder-propagation",
                "EP derived keys",
                dict(key_steps=str(key_steps_derived)),
                steps,
                _ep(key_steps=str(key_steps_derived), noise_injection=None),
                user_input="--key-steps",
            )
        )
    else:
        methods.append(
            Method(
                "encoder-propagation",
                "EP derived keys",
                {},
                steps,
                unsupported="no derived schedule: run `unetlab analyze derive` and pass --key-steps",
            )
        )
    if block_skip_plan is not None:
        plan = _load_plan(block_skip_plan, steps)
        methods.append(
            Method(
                "block-skip",
                "block skip (ablation plan)",
                {"plan": str(block_skip_plan)},
                steps,
                _bs(plan),
                user_input="--block-skip-plan",
            )
        )
    else:
        methods.append(
            Method(
                "block-skip",
                "block skip (ablation plan)",
                {},
                steps,
                unsupported="no block-skip plan: run `unetlab analyze derive` and pass --block-skip-plan",
            )
        )
    return methods
