"""Schedules from measurements: encoder-propagation key steps from a trace, a block-skip plan from an ablation
grid, and a DeepCache (branch caching) branch/interval from a trace.

Key steps (Faster Diffusion, Li et al. 2023, Sec. 3.3, chosen by hand there): a step becomes key once the
encoder change accumulated since the last key step, sum_{v} d_v with d_v the adjacent-step relative change of
the propagated tensors (skips and bottleneck), exceeds tau; a budget of k keys bisects tau. Step 0 is always key.
"""

from __future__ import annotations

import math

from ..accel.block_skip import REPLACES as SKIP_REPLACES
from ..accel.block_skip import BlockSkipPlan, SkipWindow
from ..schedules import KeySteps
from .ablate import AblationGrid
from .stats import CHANGE_METRICS
from .trace import TraceResult


def encoder_change(trace: TraceResult, metric: str = "rel_l1", half: str | None = None) -> list[float]:
    """d_s per step: mean over skip tensors and bottleneck of the change to step s-1 (d_0 = 0)."""
    if metric not in ("mse", "rel_l1"):
        raise ValueError(f"metric: {metric!r} is not an accumulable change metric (mse, rel_l1)")
    parts = trace.parts_of("skip") + trace.parts_of("bottleneck")
    if not parts:
        raise ValueError("trace: has no skip or bottleneck parts to measure the encoder change on")
    curves = [trace.curve(p, metric, half) for p in parts]
    return [0.0] + [sum(c[s] for c in curves) / len(curves) for s in range(1, len(trace.steps))]


def keys_by_threshold(d: list[float], tau: float) -> list[int]:
    """Step 0, then every step at which the change accumulated since the last key exceeds `tau`."""
    if not tau >= 0:
        raise ValueError(f"threshold: expected a non-negative number, got {tau}")
    keys, acc = [0], 0.0
    for s in range(1, len(d)):
        acc += d[s]
        if acc > tau:
            keys.append(s)
            acc = 0.0
    return keys


def keys_by_count(d: list[float], k: int) -> list[int]:
    """Exactly `k` key steps: the smallest tau giving at most k keys, then the largest-change steps to fill up."""
    n = len(d)
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"num_keys: expected an int in 1..{n} (the number of steps), got {k!r}")
    lo, hi = 0.0, sum(d) + 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if len(keys_by_threshold(d, mid)) <= k else (mid, hi)
    keys = keys_by_threshold(d, hi)
    rest = sorted((s for s in range(n) if s not in keys), key=lambda s: -d[s])
    return sorted(keys + rest[: k - len(keys)])


def derive_key_steps(
    trace: TraceResult,
    num_keys: int | None = None,
    threshold: float | None = None,
    metric: str = "rel_l1",
    half: str | None = None,
) -> KeySteps:
    """Key steps for `unetlab.encoder_propagation(..., key_steps=...)` under a budget of `num_keys` keys or an
    accumulated-change `threshold`; step 0 is always key."""
    if (num_keys is None) == (threshold is None):
        raise ValueError("budget: give exactly one of num_keys (number of key steps) or threshold (accumulated change)")
    d = encoder_change(trace, metric, half)
    keys = keys_by_count(d, num_keys) if num_keys is not None else keys_by_threshold(d, threshold)
    budget = f"num_keys={num_keys}" if num_keys is not None else f"threshold={threshold:g}"
    return KeySteps(len(trace.steps), tuple(keys), f"unetlab.analysis.derive_key_steps({metric}, {budget})")


def window_flops_saved(part_flops: int, window) -> int:
    """FLOPs one skipped window saves per sample: every step in it but a first step 0 (which fills the cache)."""
    start, end = window
    return part_flops * max(0, (end - start) - (1 if start == 0 else 0))


def derive_block_skip_plan(grid: AblationGrid, anatomy, min_psnr: float = 30.0) -> BlockSkipPlan:
    """Greedy by FLOPs saved per unit of MSE lost over the grid's block cells, while the summed MSE of the
    chosen cells stays within the PSNR budget (MSE <= 10^(-min_psnr/10), outputs in [0, 1])."""
    if grid.replace not in SKIP_REPLACES:
        raise ValueError(
            f"grid: replace={grid.replace!r} cannot be executed by block_skip; ablate with one of "
            f"{', '.join(SKIP_REPLACES)}"
        )
    n = grid.meta["num_inference_steps"]
    budget = 10 ** (-min_psnr / 10)
    candidates = []
    for c in grid.components:
        if c.startswith("skip."):
            continue
        flops = anatomy.part(c).flops
        for w in grid.windows:
            saved = window_flops_saved(flops, w)
            if saved > 0:
                mse = grid.cell(c, w)["mse"]
                candidates.append((saved / max(mse, 1e-12), c, tuple(w), saved, mse))
    candidates.sort(key=lambda x: -x[0])
    chosen, total_mse, total_saved = [], 0.0, 0
    for _, c, w, saved, mse in candidates:
        if total_mse + mse <= budget:
            chosen.append(SkipWindow(c, w[0], w[1], grid.replace))
            total_mse += mse
            total_saved += saved
    meta = dict(
        min_psnr=min_psnr,
        predicted_mse=total_mse,
        predicted_psnr=10 * math.log10(1 / total_mse) if total_mse > 0 else math.inf,
        flops_saved=total_saved,
        flops_baseline=n * anatomy.total_flops,
        flops_saved_fraction=total_saved / (n * anatomy.total_flops),
        source="derive_block_skip_plan",
    )
    return BlockSkipPlan(chosen, n, meta)


def recommend_deepcache(
    trace: TraceResult,
    anatomy,
    threshold: float = 0.2,
    max_interval: int = 10,
    metric: str = "rel_l1",
    half: str | None = None,
) -> dict:
    """For each branch b, the largest interval N for which the cached feature (the output of up block L-2-b)
    changes on average by at most `threshold` (`metric` accumulated within an N-step span, averaged over the
    spans of the run); returns the branch saving the most FLOPs."""
    if metric not in CHANGE_METRICS or metric == "cosine":
        raise ValueError(f"metric: {metric!r} is not an accumulable change metric (mse, rel_l1)")
    levels = len([p for p in anatomy.parts if p.kind == "decoder"])
    n = len(trace.steps)
    options = []
    for b in range(levels - 1):
        cached = f"up_blocks.{levels - 2 - b}"
        d = trace.curve(cached, metric, half)
        deep = (
            [f"down_blocks.{i}" for i in range(b + 1, levels)]
            + ["mid_block"]
            + [f"up_blocks.{j}" for j in range(levels - 1 - b)]
        )
        share = sum(p.share for p in anatomy.parts if p.name in deep)
        interval = 1
        for N in range(2, max_interval + 1):
            spans = [sum(d[s] for s in range(k + 1, min(k + N, n))) for k in range(0, n, N)]
            if sum(spans) / len(spans) <= threshold:
                interval = N
        full_steps = math.ceil(n / interval)
        options.append(
            dict(
                branch=b,
                interval=interval,
                cached_part=cached,
                deep_flops_share=share,
                flops_saved_fraction=share * (1 - full_steps / n),
            )
        )
    best = max(options, key=lambda o: o["flops_saved_fraction"])
    return dict(
        best,
        threshold=threshold,
        metric=metric,
        options=options,
        usage=f"unetlab.branch_cache(pipe, interval={best['interval']}, branch={best['branch']})",
    )
