"""`unetlab bench` end to end on a tiny saved pipeline; schema, fewer-steps matching, unsupported rows."""

import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler

from unetlab.bench import bench
from unetlab.bench.measure import match_steps
from unetlab.bench.report import ROW_KEYS, validate
from unetlab.bench.workload import user_workload
from unetlab.recipes.solver import Solver
from unetlab.testing import tiny_unet


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe")
    DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(path)
    return path


def test_match_steps_picks_closest_flops():
    assert match_steps(10.0 * 9.4, 10.0, 50) == 9
    assert match_steps(10.0 * 9.6, 10.0, 50) == 10
    assert match_steps(10.0 * 9.5, 10.0, 50) == 9  # ties go to fewer steps
    assert match_steps(1e9, 10.0, 50) == 50
    assert match_steps(0.0, 10.0, 50) == 1
    with pytest.raises(ValueError, match="flops_per_step"):
        match_steps(1.0, 0.0, 50)


def test_bench_end_to_end_on_tiny_pipeline(tiny_pipeline_dir, tmp_path):
    w = user_workload(str(tiny_pipeline_dir))
    out = tmp_path / "report"
    result = bench(
        workload=w,
        out=out,
        steps=8,
        num_images=2,
        timing_images=2,
        repeats=2,
        quick=True,
        methods=["branch cache N=2 B=0", "block skip (ablation plan)"],
    )
    validate(result)
    saved = json.loads((out / "bench.json").read_text())
    validate(saved)
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    by_name = {r["method"]: r for r in result["rows"]}
    base = by_name["DDIM-8"]
    assert base["speedup_wall"] == pytest.approx(1.0) and base["speedup_flops"] == pytest.approx(1.0)
    assert base["psnr"] is None  # no fidelity figure against itself
    cached = by_name["branch cache N=2 B=0"]
    assert cached["speedup_flops"] > 1.2  # half the steps skip most of the UNet
    assert cached["psnr"] is not None and 0 < cached["psnr"] < 100
    skip = by_name["block skip (ablation plan)"]
    assert skip["unsupported"] and skip["seconds_per_image"] is None
    few = [r for r in result["rows"] if r["family"] == "fewer-steps" and not r["unsupported"]]
    assert few, "a fewer-steps baseline at matched compute is added"
    # diffusers' DDIMPipeline passes DDIM's own `eta` to the scheduler's step: the other solvers cannot run there
    assert all(
        "unexpected keyword argument 'eta'" in by_name[f"{s} (fewer steps)"]["unsupported"] for s in ("DPM++", "UniPC")
    )
    per_step = base["flops_per_image"] / 8
    matched = match_steps(cached["flops_per_image"], per_step, 8)
    assert {r["steps"] for r in few} == {matched, 4}  # at branch caching's FLOPs, and at half the baseline's steps
    assert all(set(ROW_KEYS) <= set(r) for r in result["rows"])
    assert (out / "bench.md").read_text().count("\n|") >= 4
    assert (out / "pareto.png").stat().st_size > 1000
    assert list((out / "grids").rglob("*.png"))


def test_bench_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps: expected an integer >= 2"):
        bench(model="digits", steps=1)
    with pytest.raises(ValueError, match="arch: only"):
        bench(arch="sd21", random_weights=True)
    with pytest.raises(ValueError, match="random_weights: only valid"):
        bench(random_weights=True)


def test_validate_rejects_bad_rows():
    with pytest.raises(ValueError, match="missing key 'rows'"):
        validate({"machine": "m", "date": "d"})
    row = {k: None for k in ROW_KEYS}
    row["psnr"] = "high"
    with pytest.raises(ValueError, match="'psnr' must be a number"):
        validate({"machine": "m", "date": "d", "rows": [row]})


def test_unsupported_reason_from_a_failing_method(tiny_pipeline_dir):
    w = user_workload(str(tiny_pipeline_dir))
    control = "guidance dropped from step 2 (T-GATE's control, no caching)"
    result = bench(
        workload=w,
        steps=4,
        num_images=1,
        timing_images=1,
        repeats=2,
        quick=True,
        methods=[
            "tomesd ratio=0.5",
            "guidance reuse N=2",
            "T-GATE pkg gate=2",
            control,
            "PAB (diffusers) spatial 2 cross 4",
            "TaylorSeer (diffusers) N=5 order 1",
        ],
    )
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["tomesd ratio=0.5"]["unsupported"]  # the DDPM UNet has no transformer blocks for ToMe to merge
    assert rows["guidance reuse N=2"]["unsupported"].startswith(
        "UnsupportedPipelineError: target: UNet2DModel takes no conditioning"
    )
    assert rows[control]["unsupported"].startswith(
        "UnsupportedPipelineError: target: UNet2DModel takes no conditioning"
    )
    reason = rows["T-GATE pkg gate=2"]["unsupported"]  # a DDIMPipeline is not a StableDiffusionPipeline
    assert "run the steps of a StableDiffusion(XL)Pipeline" in reason or "tgate is not installed" in reason
    for name in ("PAB (diffusers) spatial 2 cross 4", "TaylorSeer (diffusers) N=5 order 1"):  # they act here
        assert rows[name]["unsupported"] is None and rows[name]["psnr"] < 100
    assert torch.isfinite(torch.tensor(result["rows"][0]["seconds_per_image"]))


def test_bench_against_a_dpm_solver_baseline():
    from diffusers import DDPMPipeline

    from unetlab.eval.workload import Workload

    pipe = DDPMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=True))
    pipe.set_progress_bar_config(disable=True)
    original = pipe.scheduler
    w = Workload("tiny-ddpm", pipe, None, None, call_kwargs={"output_type": "np"})
    result = bench(
        workload=w,
        baseline="dpm++:6",
        num_images=2,
        timing_images=1,
        repeats=2,
        quick=True,
        methods=["branch cache N=2 B=0"],
    )
    assert pipe.scheduler is original and result["settings"]["baseline"] == "dpm++:6"
    rows = {r["method"]: r for r in result["rows"]}
    assert result["rows"][0]["method"] == "DPM++-6" and rows["DPM++-6"]["psnr"] is None
    few = [r for r in result["rows"] if r["family"] == "fewer-steps" and not r["unsupported"]]
    labels = {r["method"]: Solver.from_dict(r["config"]["scheduler"]).label for r in few}
    assert set(labels.values()) == {"DPM++", "DDIM"}
    dpm_steps = {r["steps"] for r in few if labels[r["method"]] == "DPM++"}
    assert {r["steps"] for r in few if labels[r["method"]] == "DDIM"} == {3}  # quick: the others at half the steps
    assert 3 in dpm_steps and len(dpm_steps) >= 2  # the baseline's solver at every matched count
    assert all(r["psnr"] is not None and r["psnr"] < 100 for r in few)  # measured against the DPM++ baseline
    # diffusers' DDPMPipeline passes `generator` to the scheduler's step, which UniPC's does not take
    assert rows["UniPC (fewer steps)"]["unsupported"].startswith("TypeError: ")
    with pytest.raises(ValueError, match="--baseline: 'warp' is not one of ddim, dpm"):
        bench(workload=w, baseline="warp:6")
    with pytest.raises(ValueError, match="--steps: 8 disagrees with --baseline dpm\\+\\+:6"):
        bench(workload=w, baseline="dpm++:6", steps=8)


def test_fewer_steps_combination_rows_are_named_after_the_baselines_solver():
    from unetlab.bench.rows import specs

    names = [s.name for s in specs(50, quick=True, baseline="DPM++")]
    assert "DPM++-25 + branch cache N=2 layer" in names and "DPM++-20 + branch cache N=2 layer" in names
    assert not any(n.startswith("DDIM-") for n in names)
    assert "DDIM-25 + branch cache N=2 layer" in [s.name for s in specs(50, quick=True)]
