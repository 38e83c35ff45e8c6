"""The tuner's search space: step counts x accelerator settings, and their valid stacks.

For the baseline's step count S, the step counts tried are S and about 0.8, 0.6, 0.5, 0.4, 0.3, 0.24 and 0.2 of
it. At each step count n:
- fewer steps alone (n < S);
- encoder propagation (parallel decoding): uniform key sets every 2, 3 and 4 steps, the paper's SD key set
  (cut below n), and a key set derived from a trace of the model at n steps (`analysis.derive_key_steps`);
  sequential decoding computes the same images and is timed against parallel for the finalists (`twins`);
- branch caching: interval 2-5 x {block branch 0, layer branch 0, layer branch 1} (those that fit the UNet);
- clockwork with the learned adaptor distilled for the model, where one ships (the `digits` and `shapes`
  architectures), clock 2-4; with the identity adaptor it computes what block-granularity branch caching
  computes (`accel/clockwork.py`, tested bit for bit), so it is not searched again;
- block skipping: the plans derived from an ablation grid of the model at S steps, windows scaled to n;
- forecasting (`reuse="taylor1"|"taylor2"`, where the accelerators offer a `reuse` field): each encoder
  propagation or branch-caching setting that survives the first round is tried again with each forecast
  (`forecast_variants`); clockwork's forecast with the identity adaptor is branch caching's at block granularity;
- guidance reuse, where the workload samples with guidance (`guided`): the whole guidance batch every 2 or 3
  steps, and every 2 steps with guidance dropped after half the steps (T-GATE's drop);
- the solver (`SOLVERS`: DDIM, DPM-Solver++ 2M and UniPC, `solver.py`): each other solver alone at every step
  count; then, at each step count where another solver alone tracks the baseline better than the baseline's own
  solver (`best_solvers`), every surviving single accelerator is tried again with it (`solver_variants`);
- stacks (`combinations`): encoder propagation then branch caching or clockwork, built from the settings of
  each that survive the first round, sequential decoding (the only mode they stack in); and encoder propagation
  (sequential), branch caching or clockwork then guidance reuse, from the survivors of each; one solver per stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace

from ..accel import (
    BlockSkipConfig,
    BlockSkipPlan,
    BranchCacheConfig,
    ClockworkConfig,
    EncoderPropagationConfig,
    GuidanceReuseConfig,
)
from ..accel.block_skip import SkipWindow
from ..accel.registry import kinds
from ..recipes import Recipe
from ..recipes.solver import Solver
from ..schedules import KeySteps, KeyStepsError, resolve

FRACTIONS = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.24, 0.2)
INTERVALS = (2, 3, 4, 5)
BRANCHES = (("block", 0), ("layer", 0), ("layer", 1))
UNIFORM = (2, 3, 4)
GUIDANCE = (GuidanceReuseConfig(interval=2), GuidanceReuseConfig(interval=3), GuidanceReuseConfig(stop_after=0.5))
SEARCHED = ("encoder_propagation", "branch_cache", "clockwork", "block_skip", "guidance_reuse")  # the kinds searched
FAMILIES = ("steps", *(kinds()[k].family for k in SEARCHED), "combination")
REUSE_FAMILIES = ("encoder-propagation", "branch-cache", "guidance-reuse")  # those with a `reuse` to forecast
SOLVERS = ("ddim", "dpm++", "unipc")


@dataclass(frozen=True)
class Candidate:
    """One point of the space: `steps` steps of `solver` (None: the baseline's) with `accelerators` applied in
    order."""

    steps: int
    accelerators: tuple = ()
    family: str = "steps"
    solver: Solver | None = None

    @property
    def key(self) -> str:
        """A stable identity (the JSON of its step count, configs and solver when not the baseline's), the key of
        its results in the state file."""
        solver = [] if self.solver is None else [self.solver.to_dict()]
        return json.dumps([self.steps, [c.to_dict() for c in self.accelerators], *solver], sort_keys=True)

    @property
    def name(self) -> str:
        solver = "" if self.solver is None else f" {self.solver.label}"
        parts = [f"{self.steps} steps{solver}"] + [describe(c) for c in self.accelerators]
        return " + ".join(parts)

    def with_solver(self, solver: Solver | None) -> Candidate:
        return replace(self, solver=solver)

    def recipe(self, baseline: Solver, tuned_on: dict | None = None) -> Recipe:
        """The recipe this candidate is: its steps, its solver (`baseline` when it has none of its own) and its
        accelerators; what the tuner samples, times and returns."""
        return Recipe(self.steps, self.solver or baseline, self.accelerators, tuned_on or {})


def describe(cfg) -> str:
    reuse = getattr(cfg, "reuse", "copy")
    tail = f" {reuse}" if reuse not in (None, "copy") else ""
    if cfg.kind == "encoder_propagation":
        keys = cfg.key_steps
        keys = f"derived {list(keys.key_steps)}" if isinstance(keys, KeySteps) else keys
        return f"EP {keys} {'par' if cfg.parallel else 'seq'}{tail}"
    if cfg.kind == "branch_cache":
        return f"BC N={cfg.interval} {cfg.granularity} B{cfg.branch}{tail}"
    if cfg.kind == "clockwork":
        return f"CW clock={cfg.clock} L{cfg.level} adaptor {cfg.adaptor}" if cfg.adaptor else f"CW clock={cfg.clock}"
    if cfg.kind == "block_skip":
        return f"BS {len(cfg.plan.windows)} windows ({cfg.plan.meta.get('source', 'plan')})"
    if cfg.kind == "guidance_reuse":
        stop = f" stop {cfg.stop_after}" if cfg.stop_after is not None else ""
        return f"GR N={cfg.interval}{stop}{tail}"
    return cfg.kind


def step_counts(steps: int) -> list[int]:
    return sorted({max(2, round(steps * f)) for f in FRACTIONS}, reverse=True)


def forecasts(cls) -> tuple:
    """The forecast settings a reuse config offers beyond copying (none where it has no `reuse` field)."""
    names = {f.name for f in fields(cls)}
    return ("taylor1", "taylor2") if "reuse" in names else ()


def forecast_variants(survivors: list[Candidate]) -> list[Candidate]:
    """Every surviving single encoder-propagation, branch-caching or guidance-reuse candidate again with each
    forecast."""
    out = []
    for c in survivors:
        if c.family in REUSE_FAMILIES and getattr(c.accelerators[0], "reuse", None) == "copy":
            cfg = c.accelerators[0]
            out += [Candidate(c.steps, (replace(cfg, reuse=r),), c.family, c.solver) for r in forecasts(type(cfg))]
    return out


def _fits(cfg, unet) -> bool:
    try:
        cfg.deep(unet)
    except ValueError:
        return False
    return True


def scale_plan(plan: BlockSkipPlan, n: int) -> BlockSkipPlan | None:
    """The plan's windows scaled from its step count to `n` (None when nothing is left to skip)."""
    m = plan.num_inference_steps
    if m is None:
        raise ValueError("plan: num_inference_steps is None; only a plan made for a step count can be scaled")
    windows = []
    for w in plan.windows:
        start, end = round(w.start * n / m), round(w.end * n / m)
        if end > start:
            windows.append(SkipWindow(w.component, start, end, w.replace))
    if not windows:
        return None
    return BlockSkipPlan(windows, n, {**plan.meta, "source": f"{plan.meta.get('source', 'plan')}, scaled {m}->{n}"})


def encoder_propagation_configs(n: int, derived: KeySteps | None) -> list:
    specs, seen = [f"uniform:{k}" for k in UNIFORM] + ["paper"] + ([derived] if derived is not None else []), set()
    out = []
    for spec in specs:
        try:
            keys = resolve(spec, n)
        except KeyStepsError:
            continue
        if len(keys) == n or keys in seen:  # every step key, or a key set already in the list
            continue
        seen.add(keys)
        out.append(EncoderPropagationConfig(key_steps=spec, parallel=True, noise_injection=None))
    return out


def reuse_configs(unet) -> list:
    out = []
    for interval in INTERVALS:
        for granularity, branch in BRANCHES:
            cfg = BranchCacheConfig(interval=interval, branch=branch, granularity=granularity)
            if _fits(cfg, unet):
                out.append(cfg)
    return out


def adaptor_configs(unet) -> list:
    """Clockwork with the learned adaptor shipped for this UNet's architecture (`presets.family`), clock 2-4."""
    from ..accel.clockwork_adaptor import shipped_path
    from ..models.registry import CLOCKWORK_ADAPTORS
    from ..recipes.presets import family

    fam = family(unet)
    if fam not in CLOCKWORK_ADAPTORS or not (shipped_path(fam) / "config.json").is_file():
        return []
    return [ClockworkConfig(clock=clock, adaptor=fam) for clock in INTERVALS[:3]]


def guided(unet, guidance_scale: float | None) -> bool:
    """Whether a workload samples with guidance: a conditional UNet, and a guidance scale above 1 (None: the
    pipeline's default, which guides)."""
    from ..accel.handle import forward_signature

    conditional = "encoder_hidden_states" in forward_signature(unet).parameters
    return conditional and (guidance_scale is None or guidance_scale > 1)


def singles(
    unet, steps: int, derived: dict, plans: list, guidance: bool = False, solvers: tuple = ()
) -> list[Candidate]:
    """Every single-method candidate (and fewer steps alone, of the baseline's solver and of each of `solvers`) of
    the space; guidance reuse where `guidance`."""
    out = []
    reuse, adaptors = reuse_configs(unet), adaptor_configs(unet)
    for n in step_counts(steps):
        if n < steps:
            out.append(Candidate(n))
        out += [Candidate(n, solver=s) for s in solvers]
        out += [Candidate(n, (c,), "encoder-propagation") for c in encoder_propagation_configs(n, derived.get(n))]
        out += [Candidate(n, (c,), "branch-cache") for c in reuse]
        out += [Candidate(n, (c,), "clockwork") for c in adaptors]
        for plan in plans:
            scaled = plan if plan.num_inference_steps == n else scale_plan(plan, n)
            if scaled is not None:
                out.append(Candidate(n, (BlockSkipConfig(scaled),), "block-skip"))
        if guidance:
            out += [Candidate(n, (c,), "guidance-reuse") for c in GUIDANCE]
    return out


def best_solvers(plain: list[Candidate], quality) -> dict[int, Solver]:
    """Per step count, the solver of the fewer-steps-alone candidate (`plain`) with the best `quality(c)`, where it
    is not the baseline's."""
    best = {}
    for n in {c.steps for c in plain}:
        top = max((c for c in plain if c.steps == n), key=quality)
        if top.solver is not None:
            best[n] = top.solver
    return best


def solver_variants(survivors: list[Candidate], best: dict[int, Solver]) -> list[Candidate]:
    """Every surviving single accelerator of the baseline's solver again with the best solver at its step count."""
    return [
        c.with_solver(best[c.steps])
        for c in survivors
        if len(c.accelerators) == 1 and c.solver is None and c.steps in best
    ]


def combinations(survivors: list[Candidate], per_kind: int = 3) -> list[Candidate]:
    """Encoder propagation (sequential) then branch caching or clockwork, and any of the three then guidance reuse,
    from the first-round survivors at each step count and solver: the `per_kind` best-ranked settings of each
    (survivors are given best first)."""
    out = []
    groups = sorted(
        {(c.steps, c.solver) for c in survivors}, key=lambda g: (-g[0], g[1] is not None, g[1].key if g[1] else "")
    )
    for n, solver in groups:

        def best(*families, n=n, solver=solver):
            return [
                c.accelerators[0] for c in survivors if c.steps == n and c.solver == solver and c.family in families
            ][:per_kind]

        eps = [replace(ep, parallel=False) for ep in best("encoder-propagation")]
        reuse = best("branch-cache", "clockwork")
        out += [Candidate(n, (ep, r), "combination", solver) for ep in eps for r in reuse]
        out += [
            Candidate(n, (first, g), "combination", solver) for first in eps + reuse for g in best("guidance-reuse")
        ]
    return out


def twin(c: Candidate) -> Candidate | None:
    """The same computation with the other encoder-propagation decoding mode (single encoder propagation only)."""
    if c.family != "encoder-propagation":
        return None
    ep = c.accelerators[0]
    return Candidate(c.steps, (replace(ep, parallel=not ep.parallel),), c.family, c.solver)
