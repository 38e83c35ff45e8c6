"""Derived schedules: key steps include 0, respect the budget and round-trip; plans respect the PSNR budget."""

import math

import pytest

from unetlab import schedules
from unetlab.accel.block_skip import BlockSkipPlan
from unetlab.analysis import AblationGrid, TraceResult, derive_block_skip_plan, derive_key_steps, recommend_deepcache
from unetlab.analysis.derive import keys_by_count, keys_by_threshold
from unetlab.unet.anatomy import Anatomy, Part

D = [0.0, 0.5, 0.3, 0.05, 0.05, 0.05, 0.2, 0.01, 0.01, 0.4, 0.02, 0.02]


def _trace(curves: dict[str, list[float]]) -> TraceResult:
    n = len(next(iter(curves.values())))
    metrics = {
        "all": {
            p: {
                m: {"mean": c if m in ("rel_l1", "mse") else [1.0] * n, "std": [0.0] * n, "count": [1] * n}
                for m in ("mse", "rel_l1", "cosine", "fro_norm", "low_freq_share")
            }
            for p, c in curves.items()
        }
    }
    return TraceResult(
        list(curves),
        {p: [4, 4] for p in curves},
        list(range(n)),
        [999.0 - i for i in range(n)],
        [0.0] * n,
        ["all"],
        metrics,
        {"num_inference_steps": n},
    )


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3, 1.0, 10.0])
def test_threshold_keys_bound_the_accumulated_change(tau):
    keys = keys_by_threshold(D, tau)
    assert keys[0] == 0
    bounds = keys + [len(D)]
    for a, b in zip(bounds, bounds[1:]):
        for u in range(a + 1, b):  # every non-key step is within tau of its key step
            assert sum(D[a + 1 : u + 1]) <= tau
        if b < len(D):
            assert sum(D[a + 1 : b + 1]) > tau  # and each key step is needed


@pytest.mark.parametrize("k", range(1, len(D) + 1))
def test_count_budget_is_met_exactly_with_step_zero(k):
    keys = keys_by_count(D, k)
    assert keys[0] == 0 and len(keys) == k == len(set(keys)) and keys == sorted(keys)


def test_derived_key_steps_round_trip_into_encoder_propagation_format(tmp_path):
    trace = _trace({"skip.0": D, "skip.1": [2 * d for d in D], "mid_block": D, "up_blocks.0": D})
    ks = derive_key_steps(trace, num_keys=4)
    assert ks.key_steps[0] == 0 and len(ks.key_steps) == 4 and ks.num_steps == len(D)
    path = tmp_path / "keys.json"
    ks.save(path)
    assert schedules.KeySteps.load(path) == ks
    assert schedules.resolve(str(path), len(D)) == ks.key_steps
    assert derive_key_steps(trace, threshold=0.0).key_steps == tuple(i for i, d in enumerate(D) if i == 0 or d > 0)
    with pytest.raises(ValueError, match="budget"):
        derive_key_steps(trace)
    with pytest.raises(ValueError, match="num_keys"):
        derive_key_steps(trace, num_keys=len(D) + 1)


def _anatomy() -> Anatomy:
    flops = {"down_blocks.0": 100, "mid_block": 10, "up_blocks.0": 300}
    parts = [Part(n, "x", None, None, flops=f, share=f / 500) for n, f in flops.items()]
    return Anatomy("UNet2DModel", (8, 8), parts, 500, [])


def test_block_skip_plan_is_greedy_and_within_the_psnr_budget(tmp_path):
    windows = [[0, 2], [2, 6], [6, 10]]
    mse = {
        ("down_blocks.0", 0): 1e-2,
        ("down_blocks.0", 1): 2e-4,
        ("down_blocks.0", 2): 1e-4,
        ("mid_block", 0): 1e-5,
        ("mid_block", 1): 1e-6,
        ("mid_block", 2): 1e-6,
        ("up_blocks.0", 0): 5e-2,
        ("up_blocks.0", 1): 8e-4,
        ("up_blocks.0", 2): 3e-4,
    }
    cells = {f"{c}@{windows[i][0]}-{windows[i][1]}": {"mse": v} for (c, i), v in mse.items()}
    cells.update({f"skip.0@{a}-{b}": {"mse": 0.0} for a, b in windows})
    grid = AblationGrid(
        ["down_blocks.0", "mid_block", "up_blocks.0", "skip.0"],
        windows,
        "cached",
        cells,
        meta={"num_inference_steps": 10},
    )
    plan = derive_block_skip_plan(grid, _anatomy(), min_psnr=30.0)  # MSE budget 1e-3
    chosen = {(w.component, w.start) for w in plan.windows}
    assert chosen == {
        ("up_blocks.0", 6),
        ("mid_block", 2),
        ("mid_block", 6),
        ("mid_block", 0),
        ("down_blocks.0", 6),
        ("down_blocks.0", 2),
    }
    assert plan.meta["predicted_mse"] <= 1e-3
    saved = 300 * 4 + 10 * 4 + 10 * 4 + 10 * 1 + 100 * 4 + 100 * 4
    assert plan.meta["flops_saved"] == saved
    assert plan.meta["flops_saved_fraction"] == pytest.approx(saved / (10 * 500))
    assert BlockSkipPlan.load(plan.save(tmp_path / "plan.json")) == plan
    grid.replace = "mean"
    with pytest.raises(ValueError, match="replace"):
        derive_block_skip_plan(grid, _anatomy())


def test_deepcache_interval_from_constant_change():
    trace = _trace({"up_blocks.0": [0.0] + [0.05] * 20, "up_blocks.1": [0.0] + [0.5] * 20, "up_blocks.2": [0.0] * 21})
    parts = [
        Part(n, k, None, None, flops=f, share=f / 100)
        for n, k, f in [
            ("down_blocks.0", "encoder", 10),
            ("down_blocks.1", "encoder", 10),
            ("down_blocks.2", "encoder", 10),
            ("mid_block", "bottleneck", 5),
            ("up_blocks.0", "decoder", 15),
            ("up_blocks.1", "decoder", 25),
            ("up_blocks.2", "decoder", 25),
        ]
    ]
    rec = recommend_deepcache(trace, Anatomy("UNet2DModel", (8, 8), parts, 100, []), threshold=0.2)
    b0, b1 = rec["options"]
    assert b0["interval"] == 1 and b0["flops_saved_fraction"] == 0.0  # up_blocks.1 changes 0.5 per step
    # spans of 4 steps x 0.05 = 0.2 (mean 0.16 with the empty last span) <= threshold; N = 6: mean 0.2125 > 0.2
    assert b1["interval"] == 5
    assert b1["deep_flops_share"] == pytest.approx(0.10 + 0.05 + 0.15)
    assert rec["branch"] == 1 and rec["flops_saved_fraction"] == pytest.approx(0.30 * (1 - math.ceil(21 / 5) / 21))
