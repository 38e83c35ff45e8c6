"""Every bench row is a recipe: its `config` column loads back with `unetlab.accelerate` and reproduces the row's
images bit for bit; a row that raises `UnsupportedError` is reported with the reason, any other exception fails
the bench."""

import json
import math

import pytest
import torch

import unetlab
from unetlab.accel import BranchCacheConfig
from unetlab.bench import bench, timing
from unetlab.bench.harness import bench_workload
from unetlab.errors import UnsupportedError
from unetlab.eval.workload import Workload
from unetlab.testing import tiny_sd_pipeline

STEPS = 4


def _workload() -> Workload:
    """A guided tiny Stable Diffusion pipeline (prompt embeddings in, latents out): most rows run on it."""
    pipe = tiny_sd_pipeline()
    embeds = torch.randn(1, 5, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    kwargs = {"embeds": embeds, "height": 64, "width": 64, "output_type": "latent"}
    return Workload("tiny-sd", pipe, None, None, guidance_scale=7.5, call_kwargs=kwargs, speed_only=True)


@pytest.mark.parametrize(
    "baseline, methods",
    [("ddim", None), ("dpm++", ["EP uniform:2 + branch cache N=2", "branch cache N=2 B=0 + guidance reuse N=2"])],
)
def test_every_row_config_loads_back_and_reproduces_its_images(baseline, methods, monkeypatch):
    monkeypatch.setattr(timing, "SPREAD", math.inf)  # timing is not what this test is about: no re-timing
    monkeypatch.setattr(timing, "DISAGREE", math.inf)
    w = _workload()
    settings = dict(steps=STEPS, num_images=2, timing_images=1, repeats=2, seed=0, batch_size=2)
    rows, images = bench_workload(w, baseline, methods, None, None, True, None, **settings)
    ran = [r for r in rows if r["unsupported"] is None]
    families = {r["family"] for r in ran}
    assert {"baseline", "fewer-steps", "combination"} <= families
    if methods is None:  # every quick row that can run on a guided SD pipeline, the peers included
        assert (
            len(ran) >= 25
            and {
                "encoder-propagation",
                "branch-cache",
                "clockwork",
                "guidance-reuse",
                "deepcache",
                "tome",
                "tgate",
                "pab",
                "taylorseer",
            }
            <= families
        )
    solvers = {json.dumps(r["config"]["scheduler"]) for r in ran if r["family"] == "fewer-steps"}
    assert len(solvers) == 3  # DDIM, DPM++ and UniPC at matched FLOPs, swapped in from the pipeline's scheduler
    assert all(r["config"] is None or r["config"]["kind"] == "unetlab.recipe" for r in rows)
    fresh = _workload()  # the same tiny weights, the pipeline's own scheduler
    for r in ran:
        with unetlab.accelerate(fresh.pipe, r["config"]) as h:
            assert h.num_inference_steps == r["steps"]
            again = fresh.generate(2, h.num_inference_steps, 0)
        assert torch.equal(again, images[r["method"]]), r["method"]


def test_an_unsupported_error_is_a_row_and_any_other_exception_fails_the_bench(monkeypatch):
    w = _workload()
    settings = dict(steps=STEPS, num_images=1, timing_images=1, repeats=2, quick=True, workload=w)
    row = "branch cache N=2 B=0"

    class Refused(UnsupportedError):
        pass

    def refuse(self, target):
        raise Refused("branch_cache: not on this model")

    monkeypatch.setattr(BranchCacheConfig, "apply_to", refuse)
    result = bench(methods=[row], **settings)
    assert {r["method"]: r["unsupported"] for r in result["rows"]}[row] == "Refused: branch_cache: not on this model"

    for bug in (IndexError("list index out of range"), ValueError("a bug"), TypeError("another")):

        def fail(self, target, bug=bug):
            raise bug

        monkeypatch.setattr(BranchCacheConfig, "apply_to", fail)
        with pytest.raises(RuntimeError, match=f"^bench: {row} failed on tiny-sd: {type(bug).__name__}: ") as err:
            bench(methods=[row], **settings)
        assert err.value.__cause__ is bug
