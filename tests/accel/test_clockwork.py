"""Clockwork (identity adaptor): exact at clock 1, the same computation as branch caching, loud on bad input."""

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

import unetlab
from unetlab.accel.clockwork import PAPER_LEVEL, ClockworkConfig
from unetlab.testing import tiny_sd_pipeline, tiny_unet
from unetlab.unet import example_inputs

STEPS = 6


def _run(pipe, guidance=7.0, n=1):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg if guidance > 1 else None,
        guidance_scale=guidance,
        num_images_per_prompt=n,
        num_inference_steps=STEPS,
        height=128,
        width=128,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


@pytest.mark.parametrize("guidance,n", [(7.0, 2), (1.0, 1)])
def test_clock_one_equals_plain_and_removal_restores(guidance, n):
    pipe = tiny_sd_pipeline()
    base = _run(pipe, guidance, n)
    with unetlab.clockwork(pipe, clock=1) as h:
        assert torch.equal(_run(pipe, guidance, n), base)
        assert all(full for _, full in h.calls)
    with unetlab.clockwork(pipe) as h:
        approx = _run(pipe, guidance, n)
        assert h.calls == [(i, i % 2 == 0) for i in range(STEPS)]
    assert (approx - base).abs().max() > 1e-3
    assert torch.equal(_run(pipe, guidance, n), base)
    assert "_unetlab_patches" not in pipe.unet.__dict__


def test_defaults_follow_the_paper_and_equal_branch_caching():
    assert ClockworkConfig() == ClockworkConfig(clock=2, level=PAPER_LEVEL) and PAPER_LEVEL == 1
    pipe = tiny_sd_pipeline(scheduler=DPMSolverMultistepScheduler())  # a multistep solver keeps its history
    for level in (1, 2):
        with unetlab.clockwork(pipe, clock=3, level=level) as h:
            cw = _run(pipe)
            assert h.config.level == level
        with unetlab.branch_cache(pipe, interval=3, branch=level - 1):
            bc = _run(pipe)
        assert torch.equal(cw, bc)


def test_higher_level_runs_more_of_the_unet():
    unet = tiny_unet("sd")
    x, cond = example_inputs(unet, 1, seq_len=5, generator=torch.Generator().manual_seed(0))
    ran = []
    hooks = [
        b.resnets[0].register_forward_pre_hook(lambda m, a, name=f"up_blocks.{j}": ran.append(name))
        for j, b in enumerate(unet.up_blocks)
    ]
    with torch.no_grad():
        for level in (1, 2):
            with unetlab.clockwork(unet, clock=4, level=level):
                unet(x, 800, **cond)
                ran.clear()
                unet(x * 0.9, 780, **cond)
                assert ran == [f"up_blocks.{j}" for j in range(3 - level, 3)]
    for h in hooks:
        h.remove()


@pytest.mark.parametrize(
    "kwargs,arg",
    [
        (dict(clock=0), "clock"),
        (dict(clock=2.0), "clock"),
        (dict(clock=False), "clock"),
        (dict(level=0), "level"),
        (dict(level="1"), "level"),
        (dict(level=3), "level"),
    ],
)
def test_invalid_configs_raise_one_line_errors(kwargs, arg):
    unet = tiny_unet("sd")
    with pytest.raises(ValueError) as e:
        unetlab.clockwork(unet, **kwargs)
    assert str(e.value).startswith(f"{arg}:") and "\n" not in str(e.value)
    assert "_unetlab_patches" not in unet.__dict__


def test_bare_unet_reset_and_second_application():
    unet = tiny_unet("ddpm")
    x, _ = example_inputs(unet, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), unetlab.clockwork(unet, clock=3) as h:
        with pytest.raises(RuntimeError, match="clockwork: already applied"):
            unetlab.clockwork(unet)
        outs = [unet(x, t).sample for t in (900, 800, 700, 600)]
        h.reset()
        again = unet(x, 700).sample  # full again after reset
        assert h.calls == [(0, True)]
        plain = unet.__class__.forward(unet, x, 700).sample  # bypasses the hooks
    assert torch.equal(again, plain) and not torch.equal(outs[2], plain)


def test_branch_cache_and_clockwork_cannot_share_a_unet():
    unet = tiny_unet("ddpm")
    with unetlab.clockwork(unet, clock=2):
        with pytest.raises(RuntimeError, match=r"^branch_cache: clockwork is already applied") as e:
            unetlab.branch_cache(unet, interval=2)
        assert "\n" not in str(e.value)
    with unetlab.branch_cache(unet, interval=2):  # the clockwork handle is gone: allowed again
        with pytest.raises(RuntimeError, match=r"^clockwork: branch_cache is already applied"):
            unetlab.clockwork(unet, clock=2)
    assert "_unetlab_patches" not in unet.__dict__
