"""Solvers in recipes: a class name plus the config fields that differ from the pipeline's, round trip through JSON,
swap in and out exactly; DPM-Solver++ and UniPC threshold where the model samples pixels; the baseline's
SCHEDULER:STEPS and unknown names are refused in one line; the tuner's space carries the solver as a dimension."""

import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler

import unetlab
from unetlab.accel import BranchCacheConfig, EncoderPropagationConfig, GuidanceReuseConfig
from unetlab.bench import space
from unetlab.recipes import Recipe
from unetlab.recipes.presets import FAMILIES, names, preset
from unetlab.recipes.solver import Solver, check_name, parse_baseline, probe, resolve
from unetlab.testing import tiny_sd_pipeline, tiny_unet


def _pixel_pipe(cls=DDPMPipeline):
    """A pixel-space pipeline; diffusers' DDPMPipeline steps any scheduler (its DDIMPipeline passes DDIM's `eta`)."""
    pipe = cls(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=True))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe, steps=4):
    return pipe(
        batch_size=1, num_inference_steps=steps, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images


def test_named_solvers_pin_their_options_and_threshold_pixels_only():
    dpm = resolve("dpm++", _pixel_pipe())
    assert dpm.class_name == "DPMSolverMultistepScheduler" and dpm.label == "DPM++"
    assert dpm.config == {
        "algorithm_type": "dpmsolver++",
        "lower_order_final": True,
        "solver_order": 2,
        "solver_type": "midpoint",
        "thresholding": True,
        "use_karras_sigmas": False,
    }
    assert resolve("unipc", _pixel_pipe()).config["thresholding"] is True
    latent = resolve("dpm++", tiny_sd_pipeline())  # a latent pipeline: its DDIM config already says no thresholding
    assert "thresholding" not in latent.config and latent.config["algorithm_type"] == "dpmsolver++"
    assert resolve("ddim", _pixel_pipe()) == Solver("DDIMScheduler")  # the pipeline's own config, nothing set
    assert resolve("dpm", _pixel_pipe()) == dpm  # the old short name
    assert resolve("UniPCMultistepScheduler", _pixel_pipe()) == Solver("UniPCMultistepScheduler")


def test_a_solver_round_trips_and_writes_a_bare_class_name_when_nothing_differs():
    dpm = resolve("dpm++", _pixel_pipe())
    assert Solver("DDIMScheduler").to_dict() == "DDIMScheduler"
    assert Solver.from_dict(json.loads(json.dumps(dpm.to_dict()))) == dpm and hash(dpm) == hash(
        Solver.from_dict(dpm.to_dict())
    )
    recipe = Recipe(5, dpm, (BranchCacheConfig(interval=2),), {"model": "tiny"})
    back = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert back == recipe and back.scheduler == dpm
    assert recipe.to_dict()["scheduler"] == {"class_name": "DPMSolverMultistepScheduler", "config": dpm.config}


@pytest.mark.parametrize(
    "scheduler, text",
    [
        ("NoScheduler", "'NoScheduler' is not a diffusers scheduler class name"),
        ({"class_name": "DPMSolverMultistepScheduler", "config": {"warp": 1}}, "'warp' is not a config field of"),
        (
            {"class_name": "DPMSolverMultistepScheduler", "config": {"solver_order": float("nan")}},
            "expected a JSON value",
        ),
        ({"class_name": "DDIMScheduler", "config": [1]}, "config: expected an object"),
        ({"name": "DDIMScheduler"}, "expected the fields class_name and config"),
        (3, "expected a class name or"),
    ],
)
def test_bad_solvers_are_one_line_naming_the_field(scheduler, text):
    with pytest.raises(ValueError) as err:
        Recipe.from_dict({**Recipe(4, "DDIMScheduler").to_dict(), "scheduler": scheduler})
    assert str(err.value).startswith("recipe: scheduler: ") and text in str(err.value) and "\n" not in str(err.value)


def test_every_shipped_preset_still_loads_with_a_bare_ddim():
    for fam in FAMILIES:
        for name in names(fam):
            assert preset(f"{fam}:{name}").scheduler == Solver("DDIMScheduler")


def test_a_recipe_swaps_its_solver_in_and_out_exactly():
    pipe = _pixel_pipe()
    original, plain = pipe.scheduler, _sample(pipe)
    dpm = resolve("dpm++", pipe)
    by_hand = _pixel_pipe()
    by_hand.scheduler = DPMSolverMultistepScheduler.from_config(by_hand.scheduler.config, **dpm.config)
    with unetlab.accelerate(pipe, Recipe(4, dpm).to_dict()):
        assert type(pipe.scheduler) is DPMSolverMultistepScheduler and pipe.scheduler.config.thresholding
        assert pipe.scheduler.config.beta_schedule == original.config.beta_schedule  # the pipeline's config kept
        out = _sample(pipe)
    assert (out == _sample(by_hand)).all() and not (out == plain).all()
    assert pipe.scheduler is original and (_sample(pipe) == plain).all()
    pipe.scheduler = by_hand.scheduler  # already this solver: kept, not rebuilt
    with unetlab.accelerate(pipe, Recipe(4, dpm)):
        assert pipe.scheduler is by_hand.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(by_hand.scheduler.config, solver_order=3)
    with unetlab.accelerate(pipe, Recipe(4, dpm)):  # same class, another order: swapped
        assert pipe.scheduler.config.solver_order == 2


def test_probe_names_why_a_pipeline_cannot_step_a_solver():
    pipe = _pixel_pipe(DDIMPipeline)
    original = pipe.scheduler
    reason = probe(pipe, resolve("dpm++", pipe), lambda: _sample(pipe, 2))
    assert reason.startswith("TypeError: ") and "eta" in reason and "\n" not in reason
    assert pipe.scheduler is original
    assert probe(pipe, resolve("ddim", pipe), lambda: _sample(pipe, 2)) is None


@pytest.mark.parametrize(
    "text, error",
    [
        ("dpm++", "--baseline: expected SCHEDULER:STEPS such as ddim:50 or dpm++:25, got 'dpm++'"),
        ("warp:25", "--baseline: 'warp' is not one of ddim, dpm++"),
        ("dpm++:x", "--baseline: steps: expected an integer >= 2 after the colon, got 'x'"),
        ("unipc:1", "--baseline: steps: expected an integer >= 2"),
        (":25", "--baseline: expected SCHEDULER:STEPS"),
    ],
)
def test_baseline_errors_are_one_line(text, error):
    with pytest.raises(ValueError) as err:
        parse_baseline(text)
    assert str(err.value).startswith(error) and "\n" not in str(err.value)


def test_baseline_parses_names_and_class_names():
    assert parse_baseline("DPM++:25") == ("dpm++", 25) and parse_baseline("ddim:50") == ("ddim", 50)
    assert parse_baseline("UniPCMultistepScheduler:12") == ("UniPCMultistepScheduler", 12)
    check_name("euler_a")
    with pytest.raises(ValueError, match="--solvers: 'fast' is not one of"):
        check_name("fast", "--solvers")


def test_the_space_carries_the_solver_as_a_dimension():
    pipe = _pixel_pipe()
    dpm, unipc = resolve("dpm++", pipe), resolve("unipc", pipe)
    singles = space.singles(pipe.unet, 10, {}, [], False, (dpm, unipc))
    plain = [c for c in singles if not c.accelerators]
    assert {(c.steps, c.solver) for c in plain} >= {(10, dpm), (10, unipc), (8, None), (8, dpm), (2, unipc)}
    assert (10, None) not in {(c.steps, c.solver) for c in plain}  # the baseline itself is not a candidate
    assert json.loads(space.Candidate(8).key) == [8, []]  # the baseline's solver: keys as before solvers
    assert json.loads(space.Candidate(8, solver=dpm).key)[2] == dpm.to_dict()
    assert space.Candidate(8, solver=dpm).name == "8 steps DPM++"
    quality = {(8, None): 30.0, (8, dpm): 35.0, (8, unipc): 33.0, (6, None): 25.0, (6, dpm): 20.0}
    cands = [space.Candidate(n, solver=s) for n, s in quality]
    best = space.best_solvers(cands, lambda c: quality[(c.steps, c.solver)])
    assert best == {8: dpm}  # at 6 steps the baseline's own solver tracks it best
    bc = space.Candidate(8, (BranchCacheConfig(interval=2),), "branch-cache")
    ep = space.Candidate(6, (EncoderPropagationConfig(key_steps="uniform:2"),), "encoder-propagation")
    variants = space.solver_variants([bc, ep, space.Candidate(8)], best)
    assert variants == [bc.with_solver(dpm)]
    gr = space.Candidate(8, (GuidanceReuseConfig(interval=2),), "guidance-reuse", dpm)
    stacks = space.combinations([bc, variants[0], gr])
    assert [(c.solver, [a.kind for a in c.accelerators]) for c in stacks] == [(dpm, ["branch_cache", "guidance_reuse"])]
