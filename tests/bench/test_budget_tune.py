"""The tuner on budgets over the judges, relative to the baseline (a tiny model, its judge replaced by one that reads
image statistics): the recipe's Fréchet distance and all-correct rate, recomputed here from the recipe applied by
hand, meet the budget against the baseline's on the same validation seeds; a second budget in the same work folder
samples nothing during the search; an impossible relative budget names the baseline's figure."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline

import unetlab
from unetlab.bench import tuner
from unetlab.bench.tuner import VALIDATION_SEED, BudgetNotMet, tune
from unetlab.eval.workload import Workload
from unetlab.metrics import frechet_gaussian, gaussian_stats
from unetlab.testing import tiny_unet

STEPS, N = 6, 3
REFERENCE = (torch.full((3,), 0.8, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 0.01)


def _features(images):
    return images.mean(dim=(2, 3)).double()


def _verdict(images):
    return float(images.mean() < 0.6)


@pytest.fixture
def judge(monkeypatch):
    """`shapes`' judge replaced: an image is right when its mean is below 0.6; features: its channel means."""
    from unetlab.eval import scores

    monkeypatch.setattr(scores, "accuracy", lambda model, images, labels: {"overall": _verdict(images)})
    monkeypatch.setattr(scores, "features", lambda model, images: _features(images))
    monkeypatch.setattr(scores, "reference_stats", lambda model: REFERENCE)


@pytest.fixture(scope="module")
def workload():
    pipe = DDPMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    return Workload("tiny", pipe, None, "shapes", call_kwargs={"output_type": "np"})


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("judged") / "recipe.json"


def _tune(workload, out, text):
    return tune(
        "tiny",
        text,
        steps=STEPS,
        out=out,
        calibration=N,
        validation=N,
        families=("steps",),
        progress=False,
        workload=workload,
        timing_images=2,
        repeats=2,
        solvers=(),
    )


def _validation_images(workload, recipe=None):
    if recipe is None:
        return workload.generate(N, STEPS, VALIDATION_SEED)
    with unetlab.accelerate(workload.pipe, recipe) as h:
        return workload.generate(N, h.num_inference_steps, VALIDATION_SEED)


def test_a_relative_fd_budget_holds_against_the_baseline_on_the_validation_seeds(judge, workload, out):
    result = _tune(workload, out, "fd<=1.5*base")
    t = result.recipe.tuned_on
    assert t["budget"] == "fd<=1.5*base" and result.recipe.num_inference_steps < STEPS
    fd = frechet_gaussian(*gaussian_stats(_features(_validation_images(workload, result.recipe))), *REFERENCE)
    base = frechet_gaussian(*gaussian_stats(_features(_validation_images(workload))), *REFERENCE)
    assert t["validation"]["fd"] == pytest.approx(fd, rel=1e-6)
    assert t["baseline_validation"]["fd"] == pytest.approx(base, rel=1e-6)
    assert t["budget_bound"] == pytest.approx(1.5 * base, rel=1e-6) and fd <= 1.5 * base
    chosen = next(r for r in result.rows if r["chosen"])  # rows show the ratio to the baseline's figure
    assert chosen["validation"] == pytest.approx(fd / base, rel=1e-6)
    assert list((out.parent / "recipe.tune" / "features").glob("*.safetensors"))  # per image, per candidate


def test_a_second_budget_in_the_folder_samples_nothing_in_the_search(judge, workload, out, monkeypatch):
    sampled = []
    monkeypatch.setattr(tuner.Tuner, "_sample", lambda self, c, seeds, counted=False: sampled.append(c.name))
    result = _tune(workload, out, "allcorrect>=0.5*base")
    assert sampled == []
    t = result.recipe.tuned_on
    images = _validation_images(workload, result.recipe)
    rate = sum(_verdict(images[i : i + 1]) for i in range(N)) / N
    assert t["validation"]["allcorrect"] == pytest.approx(rate)
    assert rate >= 0.5 * t["baseline_validation"]["allcorrect"]


@pytest.mark.parametrize("text", ["fd<=0.001*base", "allcorrect>=1.01*base"])
def test_an_impossible_relative_budget_names_the_baselines_figure(judge, workload, out, text):
    with pytest.raises(BudgetNotMet) as err:
        _tune(workload, out, text)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"tune: no recipe meets {text} on the validation seeds")
    assert "x the baseline's" in message
    state = json.loads((out.parent / "recipe.tune" / "state.json").read_text())
    assert "metrics" not in state["settings"]  # what was measured is per seed, not a setting of the folder
