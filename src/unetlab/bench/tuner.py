"""`tune`: the fastest recipe whose quality, against the full-step baseline from the same noise, meets a budget.

1. The baseline (the solver at `steps` steps, no accelerator) samples every calibration and validation seed.
2. Round 1, every candidate of the space (`space.py`) on the first 2 calibration seeds, with its FLOPs and
   operators counted (`cost.py`); dropped: what misses the budget by more than a margin, and what another
   candidate dominates (no more FLOPs, no more operators, no worse quality): it is slower under any cost fit.
   The survivors' forecasting variants (`forecast_variants`), their variants with the solver that tracks the
   baseline best at their step count (`solver_variants`), and then the valid stacks of the survivors
   (`combinations`) join the round.
3. Successive halving on more calibration seeds (4, then all): each round adds seeds, times the calls, fits the
   cost model, drops what misses the budget (optimistically by one standard error until the last round) and
   keeps half (at least 8): half of those places for the cheapest by predicted time among those that
   meet the budget by a standard error, the rest for the cheapest of the others.
4. Validation: the finalists (and encoder propagation's other decoding mode), cheapest first, on the held-out
   validation seeds until four meet the budget there; those four recipes are timed against the baseline with the
   bench's paired, rotated rounds (`timing.time_rounds`), and the fastest becomes the recipe. No recipe meeting
   it: `BudgetNotMet`, naming the best quality reached.

Seeds: calibration 1100.., validation 1200.. (image i of a set from seed s + i; text models take the prompt of
that seed), disjoint from the seeds `unetlab bench` samples (0..). The search stops at 70% of `time_limit`, the
rest is left to validation and timing; everything measured is in the work folder (`state.py`), so a rerun of the
same command resumes.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..recipes import Recipe, accelerate
from ..recipes.solver import SchedulerSwap, Solver, check_name, probe, resolve
from ..version import __version__
from .budget import (
    JUDGED,
    SET_METRICS,
    Budget,
    Judge,
    check_budget,
    check_set_sizes,
    fd,
    jackknife,
    metrics_for,
    parse_budget,
    per_image,
)
from .cost import cheaper, count, fit, predict
from .measure import machine, wall_time
from .space import (
    FAMILIES,
    SOLVERS,
    Candidate,
    best_solvers,
    combinations,
    forecast_variants,
    guided,
    singles,
    solver_variants,
    step_counts,
    twin,
)
from .state import State, check_work_dir, work_dir
from .timing import MIN_ROUNDS, time_rounds

CALIBRATION_SEED, VALIDATION_SEED = 1100, 1200
# round 1's allowance (2 seeds), in the metric's units; fd's a fraction of the bound (a distance of 2 images)
MARGIN = {"psnr": 3.0, "ssim": 0.03, "accuracy": 0.5, "allcorrect": 0.5, "lpips": 0.05, "fd": 0.5}
SEARCH_SHARE = 0.7


class BudgetNotMet(RuntimeError):
    """No candidate meets the budget on the validation seeds; the message names the best quality reached."""


class TimeLimitReached(RuntimeError):
    """The time limit ran out before a candidate met the budget on the validation seeds (a rerun resumes)."""


@dataclass
class TuneResult:
    recipe: Recipe
    budget: Budget
    rows: list[dict]  # every candidate measured: name, family, speedup (predicted/measured), quality
    front: list[dict]  # the Pareto front of rows (speed vs calibration quality)
    seconds: float
    work: Path
    chosen: dict = field(default_factory=dict)


class Tuner:
    """One tuning run; `run()` returns a `TuneResult` (see the module docstring)."""

    def __init__(
        self,
        workload,
        budget: Budget,
        steps: int,
        solver: Solver,
        time_limit: float,
        out,
        calibration: int,
        validation: int,
        families,
        progress: bool,
        timing_images: int,
        repeats: int,
        solvers: tuple = (),
    ):
        self.w, self.budget, self.steps, self.solver = workload, budget, steps, solver
        self.solvers = tuple(s for s in solvers if s != solver)  # the other solvers searched
        self.t0, self.time_limit, self.progress = time.monotonic(), time_limit, progress
        self.timing_images, self.repeats = timing_images, repeats
        self.cal = [CALIBRATION_SEED + i for i in range(calibration)]
        self.val = [VALIDATION_SEED + i for i in range(validation)]
        self.families = tuple(families) if families is not None else FAMILIES
        # every metric the model's judge allows is measured (LPIPS only for an LPIPS budget: it is slow), so a work
        # folder serves every budget; `per_image` the metrics with a value per image, `fd` a set statistic
        self.metrics = [m for m in metrics_for(workload.quality_model) if m != "lpips" or budget.metric == "lpips"]
        self.per_image = [m for m in self.metrics if m not in SET_METRICS]
        self.judge = Judge(workload.quality_model) if workload.quality_model else None
        self._fd: dict = {}  # (candidate key, seeds) -> Fréchet distance
        from ..analysis.ablate import fingerprint

        settings = {
            "model": workload.name,
            "weights": fingerprint(workload.unet),
            "steps": steps,
            "scheduler": solver.to_dict(),
            "guidance_scale": workload.guidance_scale,
            "calibration": calibration,
            "validation": validation,
            "unetlab": __version__,
        }
        self.work = work_dir(out)
        self.state = State(self.work, settings)
        self.base = Candidate(steps)
        self._rekey()

    def _rekey(self) -> None:
        """Store entries under their configs' current JSON (a config that gained a field since the work folder
        was written, e.g. `reuse`, has a new key); of two entries for one configuration the fuller one stays."""
        entries = self.state.candidates
        for key in list(entries):
            new = self.candidate(key).key
            if new != key:
                old = entries.pop(key)
                if new not in entries or len(entries[new]["quality"]) < len(old["quality"]):
                    entries[new] = old
                    self.state.rekey(key, new)

    # ------------------------------------------------------------------ measuring
    def left(self, share: float = 1.0) -> bool:
        return time.monotonic() - self.t0 < share * self.time_limit

    def recipe(self, c: Candidate, tuned_on: dict | None = None) -> Recipe:
        return c.recipe(self.solver, tuned_on)

    def entry(self, c: Candidate) -> dict:
        return self.state.entry(c.key, c.name, c.family)

    def candidate(self, key: str) -> Candidate:
        """The candidate a state key names (its family as recorded)."""
        from ..accel import load_config

        steps, configs, *solver = json.loads(key)
        return Candidate(
            steps,
            tuple(load_config(c) for c in configs),
            self.state.candidates[key]["family"],
            Solver.from_dict(solver[0]) if solver else None,
        )

    def _generate(self, c: Candidate, start: int, n: int):
        with accelerate(self.w.pipe, self.recipe(c)):
            return self.w.generate(n, c.steps, start)

    @contextmanager
    def _baseline_solver(self):
        """The pipeline with the baseline's solver (for the traces and the ablation grid)."""
        swap = None if self.solver.matches(self.w.pipe.scheduler) else SchedulerSwap(self.w.pipe, self.solver)
        try:
            yield
        finally:
            if swap is not None:
                swap.remove()

    def measure(self, c: Candidate, seeds: list[int], counted: bool = False) -> None:
        """Every metric on `seeds` (contiguous) where a seed lacks one; FLOPs and operators counted (on all `seeds`,
        once), or the call timed."""
        e = self.entry(c)
        if counted and e["counts"] is None:
            self._sample(c, seeds, counted=True)
            return
        todo = [s for s in seeds if self._missing(c, s)]
        for run in _runs(todo):
            self._sample(c, run)

    def _missing(self, c: Candidate, seed: int) -> bool:
        """Whether a metric of `c` on `seed` is not measured (a budget's LPIPS, a metric added since)."""
        e = self.state.candidates.get(c.key)
        q = None if e is None else e["quality"].get(str(seed))
        if q is None or any(m not in q for m in self.per_image):
            return True
        return "fd" in self.metrics and seed not in self.state.features(c.key)

    def complete(self, c: Candidate, seeds: list[int]) -> bool:
        return not any(self._missing(c, s) for s in seeds)

    def _sample(self, c: Candidate, seeds: list[int], counted: bool = False) -> None:
        e = self.entry(c)
        start, n = seeds[0], len(seeds)
        if counted:
            images, flops, ops = count(lambda: self._generate(c, start, n))
            e["counts"] = {"flops": flops / n, "ops": ops}
        else:
            out: dict[str, torch.Tensor] = {}
            seconds = wall_time(lambda: out.setdefault("images", self._generate(c, start, n)))
            images = out["images"]
            e["times"].append([n, seconds])
        self._score(c, seeds, images)

    def _score(self, c: Candidate, seeds: list[int], images: torch.Tensor) -> None:
        """Record the metrics of `c`'s `images` of `seeds` (contiguous), keeping what was measured before."""
        e = self.entry(c)
        ref = torch.stack([self.reference[s] for s in seeds])
        values, feats = per_image(images, ref, self.judge, self.w.labels(len(seeds), seeds[0]), self.metrics)
        for i, s in enumerate(seeds):
            e["quality"].setdefault(str(s), {}).update({m: v[i] for m, v in values.items()})
        if feats is not None:
            self.state.add_features(c.key, {s: feats[i] for i, s in enumerate(seeds)})
            self._fd = {k: v for k, v in self._fd.items() if k[0] != c.key}
        self.state.save()

    def _measured(self, c: Candidate, seeds: list[int], metric: str) -> list[int]:
        e = self.state.candidates.get(c.key)
        if e is None:
            return []
        if metric in SET_METRICS:
            return [s for s in seeds if s in self.state.features(c.key)]
        return [s for s in seeds if metric in e["quality"].get(str(s), {})]

    def _set_value(self, c: Candidate, seeds: list[int]) -> float:
        """The Fréchet distance of `c`'s images of `seeds` (nan below 2)."""
        key = (c.key, tuple(seeds))
        if key not in self._fd:
            assert self.judge is not None  # a set metric is measured only with a judge
            feats = self.state.features(c.key)
            self._fd[key] = fd(torch.stack([feats[s] for s in seeds]), self.judge.reference()) if seeds else math.nan
        return self._fd[key]

    def quality(self, c: Candidate, seeds: list[int], metric: str | None = None) -> tuple[float, float]:
        """(value, standard error) of `metric` (the budget's) over the measured `seeds`: the mean of the per-image
        values, or a set metric of the set (its jackknife standard error)."""
        metric = metric or self.budget.metric
        seeds = self._measured(c, seeds, metric)
        if metric in SET_METRICS:
            return self._set_value(c, seeds), jackknife(lambda s: self._set_value(c, s), seeds)
        q = self.entry(c)["quality"]
        v = [q[str(s)][metric] for s in seeds]
        if not v:
            return math.nan, math.inf
        return statistics.fmean(v), (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else math.inf)

    def bound(self, seeds: list[int]) -> float:
        """The budget's bound on `seeds`: its value, or its factor times the baseline's figure on them."""
        return self.budget.bound(self.quality(self.base, seeds)[0]) if self.budget.relative else self.budget.value

    def slack(self, c: Candidate, seeds: list[int]) -> tuple[float, float]:
        """(how far `c` is on the good side of the budget on its measured `seeds`, standard error): per image the
        paired difference to the bound (to the factor times the baseline's value of the same image), for a set
        metric the set's (jackknife standard error)."""
        b, metric = self.budget, self.budget.metric
        seeds = self._measured(c, seeds, metric)
        if not seeds:
            return math.nan, math.inf
        if metric in SET_METRICS:

            def stat(s):
                return b.slack(self._set_value(c, s), self.bound(s))

            return stat(seeds), jackknife(stat, seeds)
        q, base = self.entry(c)["quality"], self.entry(self.base)["quality"]
        d = [b.slack(q[str(s)][metric], b.bound(base[str(s)][metric]) if b.relative else b.value) for s in seeds]
        return statistics.fmean(d), (statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.inf)

    def figure(self, c: Candidate, seeds: list[int]) -> float:
        """What a row shows of `c` on `seeds`: the budget metric's value, or its ratio to the baseline's on the same
        seeds for a relative budget."""
        value = self.quality(c, seeds)[0]
        if not self.budget.relative:
            return value
        base = self.quality(self.base, self._measured(c, seeds, self.budget.metric))[0]
        if base == 0:  # a judge's rate of 0 on these seeds: anything above it is infinitely better
            return 1.0 if value == 0 else math.inf
        return value / base

    def fit(self) -> tuple[float, float]:
        samples = []
        for e in self.state.candidates.values():
            if e["counts"] is not None:
                samples += [(n, e["counts"]["flops"], e["counts"]["ops"], t) for n, t in e["times"]]
        return fit(samples)

    def predicted(self, c: Candidate, coef) -> float:
        return predict(coef, self.entry(c)["counts"], self.timing_images)

    # ------------------------------------------------------------------ the search
    def _round(self, cands, seeds, counted, desc) -> list[Candidate]:
        done = []
        for c in tqdm(cands, desc=desc, unit="cfg", disable=not self.progress, leave=False):
            if self.left(SEARCH_SHARE):
                self.measure(c, seeds, counted)
            if self.complete(c, seeds):
                done.append(c)
        return done

    def _prune(self, cands, seeds) -> list[Candidate]:
        """Round 1: drop what misses the budget by more than the margin, and what is dominated: another candidate
        with no more FLOPs and operators that is no worse image by image (the budget metric, a set metric by its
        value on the set, and PSNR, on every seed). On two images a mean can lead by luck where the other is ahead
        on one image; a candidate dropped so would never be measured again."""
        margin = MARGIN[self.budget.metric] * (abs(self.bound(seeds)) if self.budget.metric in SET_METRICS else 1)
        q = {c.key: self._per_image(c, seeds) for c in cands}
        keep = [c for c in cands if self.slack(c, seeds)[0] + margin >= 0]
        sign = self.budget.sign

        def dominates(a, b) -> bool:
            pairs = list(zip(q[a.key], q[b.key]))
            ca, cb = self.entry(a)["counts"], self.entry(b)["counts"]
            no_worse = all(sign * x[0] >= sign * y[0] and x[1] >= y[1] for x, y in pairs) and cheaper(ca, cb)
            better = any(sign * x[0] > sign * y[0] or x[1] > y[1] for x, y in pairs)
            return no_worse and (better or not cheaper(cb, ca))

        kept = [b for b in keep if not any(dominates(a, b) for a in keep if a is not b)]
        return sorted(kept, key=lambda c: -sign * self.quality(c, seeds)[0])

    def _per_image(self, c: Candidate, seeds: list[int]) -> list[tuple[float, float]]:
        """(the budget metric, PSNR) of each of `seeds`' images (a set metric: its value on the set, on every one)."""
        metric, q = self.budget.metric, self.entry(c)["quality"]
        whole = self._set_value(c, seeds) if metric in SET_METRICS else None
        return [(q[str(s)][metric] if whole is None else whole, q[str(s)]["psnr"]) for s in seeds]

    def _halve(self, cands, seeds, minimum, strict) -> list[Candidate]:
        """Drop what misses the budget (by more than a standard error until the last round); keep half (at least
        `minimum`): the cheaper half of the kept places goes to the cheapest of those that meet the budget by a
        standard error, the rest to the cheapest of the others, by predicted time."""
        coef = self.fit()
        ok, sure = [], []
        for c in cands:
            slack, se = self.slack(c, seeds)
            if slack + (0 if strict else se) >= 0:
                ok.append(c)
                if slack - se >= 0:
                    sure.append(c)
        ok.sort(key=lambda c: self.predicted(c, coef))
        sure.sort(key=lambda c: self.predicted(c, coef))
        k = max(minimum, math.ceil(len(ok) / 2))
        keep = sure[: math.ceil(k / 2)]
        keep += [c for c in ok if c not in keep][: k - len(keep)]
        return sorted(keep, key=lambda c: self.predicted(c, coef))

    def _solvers(self) -> None:
        """Refuse a baseline solver the pipeline cannot step with; drop such solvers from the search, noting why."""

        def call():
            return self.w.generate(1, 2, self.cal[0])

        reason = probe(self.w.pipe, self.solver, call)
        if reason is not None:
            raise ValueError(f"--scheduler: {self.solver.label} cannot sample {self.w.name}: {reason}")
        self.skipped = {s.label: probe(self.w.pipe, s, call) for s in self.solvers}
        self.solvers = tuple(s for s in self.solvers if self.skipped[s.label] is None)

    def run(self) -> TuneResult:
        w, cal = self.w, self.cal
        self._solvers()
        self._baseline()
        guidance = guided(w.unet, w.guidance_scale)
        pool = [
            c
            for c in singles(w.unet, self.steps, self._derived(), self._plans(), guidance, self.solvers)
            if c.family in self.families
        ]
        s1, s2 = cal[: min(2, len(cal))], cal[: min(4, len(cal))]
        self.measure(self.base, s1, counted=True)
        measured = self._round(pool, s1, True, "tune: round 1")
        survivors = self._prune(measured, s1)
        forecast = self._round(forecast_variants(survivors), s1, True, "tune: forecasts")
        if forecast:
            survivors = self._prune(survivors + forecast, s1)
            measured += forecast
        plain = [self.base] + [c for c in measured if not c.accelerators]
        best = best_solvers(plain, lambda c: self._oriented(c, s1))
        solved = self._round(solver_variants(survivors, best), s1, True, "tune: solvers")
        if solved:
            survivors = self._prune(survivors + solved, s1)
            measured += solved
        if "combination" in self.families:
            combos = self._round(combinations(survivors), s1, True, "tune: stacks")
            survivors = self._prune(survivors + combos, s1)
            measured += combos
        finalists, seen = survivors, s1
        for seeds, minimum, strict in ((s2, 8, False), (cal, 8, True)):
            new = [s for s in seeds if s not in seen]
            if new:
                finalists = self._round(finalists, new, False, f"tune: {len(seeds)} seeds")
            finalists, seen = self._halve(finalists, seeds, minimum, strict), seeds
        return self._validate(finalists, measured)

    # ------------------------------------------------------------------ inputs of the space
    def _baseline(self) -> None:
        """The full-step baseline images of every seed (timed: samples for the cost fit), and their metrics (the
        judges' figures are what a relative budget scales)."""
        self.reference = self.state.reference()
        if not all(s in self.reference for s in self.cal + self.val):
            e = self.entry(self.base)
            for seeds in (self.cal, self.val):
                out: dict[str, torch.Tensor] = {}

                def sample(seeds=seeds, out=out) -> None:
                    out["x"] = self._generate(self.base, seeds[0], len(seeds))

                e["times"].append([len(seeds), wall_time(sample)])
                self.reference.update({s: out["x"][i] for i, s in enumerate(seeds)})
            self.state.save_reference(self.reference)
            self.state.save()
        for run in _runs([s for s in self.cal + self.val if self._missing(self.base, s)]):
            self._score(self.base, run, torch.stack([self.reference[s] for s in run]))

    def _prompt(self):
        return None if self.w.prompts is None else [self.w.labels(1, self.cal[0])[0]]

    def _derived(self) -> dict:
        """Encoder-propagation key sets derived from a trace at each step count (as many keys as uniform:3)."""
        if "encoder-propagation" not in self.families and "combination" not in self.families:
            return {}
        from ..analysis import derive_key_steps, trace
        from ..schedules import KeySteps

        saved = self.state.extra("derived") or {}
        out = {}
        for n in step_counts(self.steps):
            if str(n) not in saved and self.left(SEARCH_SHARE):
                with self._baseline_solver():
                    r = trace(
                        self.w.pipe,
                        self._prompt(),
                        n,
                        seeds=(self.cal[0],),
                        guidance_scale=self.w.guidance_scale,
                        progress=False,
                    )
                saved[str(n)] = derive_key_steps(r, num_keys=math.ceil(n / 3)).to_dict()
                self.state.set_extra("derived", saved)
            if str(n) in saved:
                d = saved[str(n)]
                out[n] = KeySteps(d["num_steps"], tuple(d["key_steps"]), d.get("source", ""))
        return out

    def _plans(self) -> list:
        """Block-skip plans derived from an ablation grid at the baseline's step count (PSNR 30, 35, 40 dB), in 4
        windows (one per step below 4 steps)."""
        if "block-skip" not in self.families:
            return []
        from ..accel import BlockSkipPlan
        from ..analysis import ablate, derive_block_skip_plan
        from ..unet import anatomy

        saved = self.state.extra("plans")
        if saved is None and not self.left(SEARCH_SHARE):
            return []
        if saved is None:
            with self._baseline_solver():
                grid = ablate(
                    self.w.pipe,
                    windows=min(4, self.steps),
                    replace="cached",
                    seeds=(self.cal[0],),
                    prompts_or_batch=self._prompt(),
                    num_inference_steps=self.steps,
                    guidance_scale=self.w.guidance_scale,
                    out_dir=self.work,
                    progress=False,
                )
            a = anatomy(self.w.unet)
            plans = {}
            for p in (30.0, 35.0, 40.0):
                plan = derive_block_skip_plan(grid, a, p)
                if plan.windows:
                    plans[str([w.__dict__ for w in plan.windows])] = plan.to_dict()
            saved = list(plans.values())
            self.state.set_extra("plans", saved)
        return [BlockSkipPlan.from_dict(d) for d in saved]

    # ------------------------------------------------------------------ validation and the choice
    def _validate(self, finalists, measured, wanted: int = 4) -> TuneResult:
        """Finalists on the validation seeds, cheapest first, until `wanted` meet the budget there; when none does,
        the best four by calibration quality. Those that meet it are timed; the fastest measured is the recipe."""
        order = (
            finalists
            + [c for c in sorted(measured, key=lambda c: -self._oriented(c, self.cal)) if c not in finalists][:4]
        )
        passed: list[Candidate] = []
        for i, c in enumerate(order):
            if len(passed) >= wanted or (i >= len(finalists) and passed) or not self.left():
                break
            for x in (c, twin(c)):
                if x is not None:
                    self.measure(x, self.cal[:2], counted=True)
                    self.measure(x, self.val)
                    if self.slack(x, self.val)[0] >= 0:
                        passed.append(x)
        if not passed:
            self._fail(order)
        coef = self.fit()
        passed.sort(key=lambda c: self.predicted(c, coef))
        predicted = {c.key: self.predicted(self.base, coef) / self.predicted(c, coef) for c in passed[:wanted]}
        timed = self._time([self.base] + passed[:wanted], predicted)
        chosen = max(passed[:wanted], key=lambda c: credited(timed[c.key], predicted[c.key]))
        return self._result(chosen, timed, coef)

    def _oriented(self, c, seeds) -> float:
        figure = self.figure(c, seeds)
        return -math.inf if math.isnan(figure) else self.budget.sign * figure

    def _fail(self, tried) -> None:
        validated = [c for c in tried if self.complete(c, self.val)]
        if validated:
            best = max(validated, key=lambda c: self._oriented(c, self.val))
            where = "validation seeds"
        else:
            measured = [
                c
                for c in map(self.candidate, self.state.candidates)
                if c != self.base and not math.isnan(self.quality(c, self.cal)[0])
            ]
            best = max(measured, key=lambda c: self._oriented(c, self.cal), default=None)
            where = "calibration seeds (none was validated)"
        if best is None and not self.left():
            raise TimeLimitReached(
                f"tune: the time limit ({self.time_limit:g} s) ran out before any configuration was measured (the "
                f"baseline's images and the search's inputs took {time.monotonic() - self.t0:.0f} s); give a longer "
                f"--time-limit, or run the same command again to resume from {self.work}"
            )
        reached = "nothing was measured" if best is None else self._reached(best, self.val if validated else self.cal)
        if not validated and not self.left():
            raise TimeLimitReached(
                f"tune: the time limit ran out before a recipe met {self.budget} on the validation "
                f"seeds; best so far on {where}: {reached}; run the same command again to resume from "
                f"{self.work}"
            )
        raise BudgetNotMet(
            f"tune: no recipe meets {self.budget} on the validation seeds; best quality reached on {where}: {reached}"
        )

    def _reached(self, c: Candidate, seeds: list[int]) -> str:
        """`c`'s quality on `seeds` in words (and the baseline's there, for a relative budget)."""
        b = self.budget
        text = f"{b.metric} {self.quality(c, seeds)[0]:.4g}"
        if b.relative:
            base = self.quality(self.base, self._measured(c, seeds, b.metric))[0]
            text += f", {self.figure(c, seeds):.3g}x the baseline's {base:.4g}"
        return f"{text} ({c.name})"

    def _time(self, cands, predicted: dict) -> dict:
        """The baseline and the candidates' recipes timed as the bench times its rows (`timing.time_rounds`), a
        candidate whose wall speed-up is more than 2x off the cost model's `predicted` one re-measured."""
        recipes = {c.key: self.recipe(c) for c in cands}
        bar = tqdm(total=len(recipes) * (1 + self.repeats), desc="tune: timing", disable=not self.progress, leave=False)
        out = time_rounds(self.w, recipes, self.timing_images, self.repeats, VALIDATION_SEED, bar, predicted)
        bar.close()
        return out

    def _result(self, chosen, timed, coef) -> TuneResult:
        base_counts = self.entry(self.base)["counts"]
        rows = []
        for key, e in self.state.candidates.items():
            c = self.candidate(key)
            if e["counts"] is None or c == self.base:
                continue
            row = {
                "name": e["name"],
                "family": e["family"],
                "key": key,
                "speedup_predicted": self.predicted(self.base, coef) / self.predicted(c, coef),
                "speedup_flops": base_counts["flops"] / e["counts"]["flops"],
                "calibration": self.figure(c, self.cal),
                "calibration_seeds": len(self._measured(c, self.cal, self.budget.metric)),
                "validation": self.figure(c, self.val) if self.complete(c, self.val) else None,
                "speedup_wall": timed.get(key, {}).get("speedup_wall"),
            }
            rows.append(row)
        front = pareto(rows, self.budget.sign)
        val = {m: self.quality(chosen, self.val, m)[0] for m in self.metrics}
        judged = [m for m in self.metrics if m in JUDGED]
        bound = {"budget_bound": self.bound(self.val)} if self.budget.relative else {}
        t = timed[chosen.key]
        tuned_on = {
            "model": self.w.name,
            "guidance_scale": self.w.guidance_scale,
            "budget": str(self.budget),
            "baseline": f"{self.solver.class_name}, {self.steps} steps",
            "baseline_steps": self.steps,
            "baseline_scheduler": self.solver.to_dict(),
            "solvers": {self.solver.label: "baseline", **{k: v or "searched" for k, v in self.skipped.items()}},
            "validation": val,
            **({"baseline_validation": {m: self.quality(self.base, self.val, m)[0] for m in judged}} if judged else {}),
            **bound,
            "speedup_wall": t["speedup_wall"],
            "speedup_wall_min": t["speedup_wall_min"],
            "speedup_wall_max": t["speedup_wall_max"],
            "speedup_flops": base_counts["flops"] / self.entry(chosen)["counts"]["flops"],
            "timing": f"minimum time over {t['timing_rounds']} rotated rounds of {self.timing_images} images "
            f"(re-timed {t['timing_retimed']}x; spread of the fastest {t['timing_spread']:.0%}), "
            f"paired ratios min-max; {machine()}",
            "calibration_seeds": self.cal,
            "validation_seeds": self.val,
            "date": datetime.date.today().isoformat(),
            "tune_seconds": round(time.monotonic() - self.t0, 1),
            "unetlab": __version__,
        }
        recipe = self.recipe(chosen, tuned_on)
        for r in rows:
            r["chosen"] = r["key"] == chosen.key
        return TuneResult(
            recipe, self.budget, rows, front, tuned_on["tune_seconds"], self.work, {"name": chosen.name, **tuned_on}
        )


def _runs(seeds: list[int]) -> list[list[int]]:
    """`seeds` split into runs of consecutive seeds (one pipeline call each)."""
    out: list[list[int]] = []
    for s in seeds:
        if out and out[-1][-1] == s - 1:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def credited(timing: dict, predicted: float) -> float:
    """The speed-up a candidate is chosen by: its measured one, or the cost model's `predicted` one where that is
    lower and the measurement, re-measured, still disagrees with it by more than 2x (a figure nothing explains does
    not pick the recipe)."""
    wall = timing["speedup_wall"]
    return min(wall, predicted) if timing["timing_disagrees"] else wall


def pareto(rows: list[dict], sign: int = 1) -> list[dict]:
    """The rows no other row beats in both predicted speed-up and calibration quality (`sign`: +1 where higher is
    better), fastest first."""
    front, best = [], -math.inf
    for r in sorted(rows, key=lambda r: (-r["speedup_predicted"], -sign * r["calibration"])):
        if sign * r["calibration"] > best:
            front.append(r)
            best = sign * r["calibration"]
    return front


def tune(
    model,
    budget: str | Budget,
    steps: int = 50,
    scheduler: str = "ddim",
    time_limit: float = 600.0,
    out="recipe.json",
    calibration: int = 8,
    validation: int = 8,
    families=None,
    progress: bool = True,
    workload=None,
    timing_images: int = 4,
    repeats: int = 2,
    solvers=SOLVERS,
) -> TuneResult:
    """Search the space for the fastest recipe meeting `budget` (e.g. "psnr>=35") on the validation seeds, against
    the baseline `scheduler` (a short name of `solver.NAMED` or a class name) at `steps` steps, with `solvers` as a
    dimension; writes nothing but the work folder next to `out` (the command writes the recipe and the plot)."""
    for name, value, low in (
        ("steps", steps, 2),
        ("calibration", calibration, 1),
        ("validation", validation, 1),
        ("timing_images", timing_images, 1),
        ("repeats", repeats, MIN_ROUNDS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit: expected a number of seconds > 0, got {time_limit!r}")
    if families is not None:
        bad = [f for f in families if f not in FAMILIES]
        if bad:
            raise ValueError(f"families: unknown {bad}; valid: {', '.join(FAMILIES)}")
    check_name(scheduler)
    for s in solvers:
        check_name(s, "--solvers")
    if isinstance(budget, Budget):
        check_set_sizes(budget, calibration, validation)
    check_work_dir(out)
    if workload is None:
        from ..loading import check_exists
        from .workload import workload_for

        check_exists(str(model))
        workload = workload_for(str(model))
    qm = workload.quality_model
    b = check_budget(budget, qm) if isinstance(budget, Budget) else parse_budget(budget, qm)
    check_set_sizes(b, calibration, validation)
    searched = tuple(resolve(s, workload.pipe) for s in solvers)
    return Tuner(
        workload,
        b,
        steps,
        resolve(scheduler, workload.pipe),
        float(time_limit),
        out,
        calibration,
        validation,
        families,
        progress,
        timing_images,
        repeats,
        searched,
    ).run()
