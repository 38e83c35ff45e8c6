"""Recipes: JSON round trip, one-line errors naming the field, `accelerate` == the parts applied by hand (bit for
bit), removal restores the pipeline (scheduler object included), presets pick the model's entry."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

import unetlab
from unetlab.accel import BlockSkipConfig, BranchCacheConfig, EncoderPropagationConfig, SkipWindow
from unetlab.recipes import Recipe
from unetlab.recipes.presets import family, preset
from unetlab.testing import tiny_sd_pipeline, tiny_unet

STEPS = 6
STACK = (
    EncoderPropagationConfig(key_steps="uniform:2", parallel=False, noise_injection=None),
    BranchCacheConfig(interval=2, branch=0, granularity="layer"),
)


def _run(pipe, steps=STEPS):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        guidance_scale=5.0,
        num_inference_steps=steps,
        height=128,
        width=128,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


def _recipe(scheduler="DDIMScheduler", accelerators=STACK, steps=STEPS):
    return Recipe(steps, scheduler, accelerators, {"model": "tiny", "budget": "psnr>=30", "seeds": [1, 2]})


def test_round_trip_through_json(tmp_path):
    plan = BlockSkipConfig([SkipWindow("mid_block", 1, 4)])
    for r in (_recipe(), _recipe(accelerators=(plan,))):
        path = r.save(tmp_path / "r.json")
        back = Recipe.load(path)
        assert back == r and back.tuned_on == r.tuned_on
        assert json.loads(path.read_text()) == r.to_dict() == back.to_dict()


def test_accelerate_equals_the_parts_by_hand_and_remove_restores():
    pipe = tiny_sd_pipeline(scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1))
    original = pipe.scheduler
    plain = _run(pipe)
    by_hand_pipe = tiny_sd_pipeline(scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1))
    by_hand_pipe.scheduler = DDIMScheduler.from_config(by_hand_pipe.scheduler.config)
    handles = [unetlab.accel.apply(by_hand_pipe, c) for c in STACK]
    by_hand = _run(by_hand_pipe)
    for h in reversed(handles):
        h.remove()
    with unetlab.accelerate(pipe, _recipe().to_dict()) as h:
        assert type(pipe.scheduler) is DDIMScheduler and h.num_inference_steps == STEPS
        assert dict(pipe.scheduler.config) == dict(by_hand_pipe.scheduler.config)  # built from the pipeline's config
        out = _run(pipe, h.num_inference_steps)
    assert torch.equal(out, by_hand) and not torch.equal(out, plain)
    assert pipe.scheduler is original
    assert torch.equal(_run(pipe), plain)
    assert "_unetlab_patches" not in pipe.unet.__dict__
    assert not any(hasattr(m, "_diffusers_hook") for m in pipe.unet.modules())


def test_same_scheduler_class_is_kept_and_a_json_path_works(tmp_path):
    pipe = tiny_sd_pipeline()
    original = pipe.scheduler
    path = _recipe().save(tmp_path / "r.json")
    h = unetlab.accelerate(pipe, str(path))
    assert pipe.scheduler is original
    h.remove()
    h.remove()  # idempotent
    assert "_unetlab_patches" not in pipe.unet.__dict__


@pytest.mark.parametrize(
    "change, field",
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"scheduler": "NoSuchScheduler"}, "scheduler"),
        ({"accelerators": "branch_cache"}, "accelerators"),
        ({"accelerators": [{"kind": "unetlab.branch_cache", "interval": 0}]}, "accelerators[0]: interval"),
        ({"accelerators": [STACK[1].to_dict(), STACK[0].to_dict()]}, "encoder_propagation after branch_cache"),
        (
            {
                "accelerators": [
                    {"kind": "unetlab.encoder_propagation", "key_steps": "uniform:2", "parallel": False},
                    {"kind": "unetlab.block_skip", "plan": {"kind": "unetlab.block_skip", "windows": []}},
                ]
            },
            "block_skip after encoder_propagation",
        ),
        (
            {
                "accelerators": [
                    BlockSkipConfig({"kind": "unetlab.block_skip", "num_inference_steps": 9, "windows": []}).to_dict()
                ]
            },
            "accelerators[0] (block_skip)",
        ),
        ({"tuned_on": [1]}, "tuned_on"),
        ({"speed": 2}, "unknown field(s) speed"),
    ],
)
def test_invalid_recipe_is_one_line_naming_the_field(change, field):
    d = {**_recipe().to_dict(), **change}
    with pytest.raises(ValueError) as err:
        unetlab.accelerate(tiny_sd_pipeline(), d)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_missing_field_and_file():
    d = _recipe().to_dict()
    del d["scheduler"]
    with pytest.raises(ValueError, match="recipe: scheduler: missing"):
        Recipe.from_dict(d)
    with pytest.raises(FileNotFoundError, match="recipe: no such file"):
        unetlab.accelerate(tiny_sd_pipeline(), "nope.json")


def test_recipe_refuses_an_applied_accelerator_and_a_second_recipe():
    pipe = tiny_sd_pipeline()
    with unetlab.branch_cache(pipe), pytest.raises(RuntimeError, match="branch_cache is already applied"):
        unetlab.accelerate(pipe, _recipe())
    with unetlab.accelerate(pipe, _recipe()):
        with pytest.raises(RuntimeError, match="recipe: already applied"):
            unetlab.accelerate(pipe, _recipe())


def test_a_scheduler_swap_is_undone_when_an_accelerator_fails():
    pipe = tiny_sd_pipeline(scheduler=PNDMScheduler(skip_prk_steps=True))
    original = pipe.scheduler
    bad = _recipe("DPMSolverMultistepScheduler", (BranchCacheConfig(interval=2, branch=5),))
    with pytest.raises(ValueError, match="branch"):
        unetlab.accelerate(pipe, bad)
    assert pipe.scheduler is original and "_unetlab_patches" not in pipe.unet.__dict__
    assert DPMSolverMultistepScheduler  # the class the recipe named exists


def test_presets_pick_the_model_family():
    from unetlab.unet.configs import sd15_like

    sd = tiny_sd_pipeline(sd15_like(scale=10, sample_size=8))
    assert family(sd.unet) == "sd15" and family(tiny_unet("sd")) is None
    assert family(unetlab.load("shapes").unet) == "shapes" and family(unetlab.load("digits").unet) == "digits"
    with unetlab.accelerate(sd, "fast") as h:
        assert [c.kind for c in h.recipe.accelerators] == ["branch_cache"]  # tuned on mini-sd for psnr>=30
    assert h.num_inference_steps == 50 and preset("sd15:fast").tuned_on["budget"] == "psnr>=30"
    assert preset("sd15:balanced").tuned_on["model"] == "mini-sd"
    assert preset("sdxl:balanced").tuned_on["quality"] == "untested"
    with pytest.raises(ValueError, match="no shipped preset fits"):
        unetlab.accelerate(tiny_sd_pipeline(), "fast")
    with pytest.raises(ValueError, match="presets for sd15: balanced, fast"):
        unetlab.accelerate(sd, "fastest")
