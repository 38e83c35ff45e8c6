"""Accelerators on the UNets diffusers has (1D, 2D, 3D): each applies, or refuses in one line naming the argument
with a ValueError/TypeError (never an AttributeError from inside the model), and a refusal leaves no patch."""

import re

import pytest
import torch
from diffusers import DDIMScheduler, UNet1DModel, UNet3DConditionModel

import unetlab
from unetlab.testing import tiny_unet


def _unet_1d():
    return UNet1DModel(
        sample_size=64,
        in_channels=2,
        out_channels=2,
        extra_in_channels=64,
        block_out_channels=(32, 32, 64),
        time_embedding_type="fourier",
        use_timestep_embedding=False,
        flip_sin_to_cos=True,
        mid_block_type="UNetMidBlock1D",
        down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
        up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
    )


def _unet_3d():
    return UNet3DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )


UNETS = {"1d": _unet_1d, "2d": lambda: tiny_unet("ddpm"), "3d": _unet_3d}
ACCELERATORS = {
    "branch_cache": lambda u: unetlab.branch_cache(u, interval=2),
    "branch_cache_layer": lambda u: unetlab.branch_cache(u, granularity="layer"),
    "clockwork": lambda u: unetlab.clockwork(u),
    "encoder_propagation": lambda u: unetlab.encoder_propagation(u, num_inference_steps=4),
    "block_skip": lambda u: unetlab.block_skip(u, [], scheduler=DDIMScheduler()),
    "anchor_attention": lambda u: unetlab.anchor_attention(u),
    "guidance_reuse": lambda u: unetlab.guidance_reuse(u),
}
# the refusals this suite pins down (any other pair may apply or refuse, but only in one line)
REFUSED = {
    ("1d", "branch_cache_layer"): "granularity: 'layer' needs blocks of resnets and downsamplers",
    ("1d", "encoder_propagation"): "unet: UNet1DModel is not supported",
    ("3d", "branch_cache_layer"): "use whole levels \\(granularity='block'\\)",
}


@pytest.mark.parametrize("accel", ACCELERATORS)
@pytest.mark.parametrize("kind", UNETS)
def test_an_accelerator_applies_or_refuses_in_one_line(kind, accel):
    unet = UNETS[kind]()
    forward = unet.forward
    try:
        handle = ACCELERATORS[accel](unet)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert "\n" not in message and ": " in message, message
        assert not unet.__dict__.get("_unetlab_patches") and unet.forward == forward  # nothing left applied
        if (kind, accel) in REFUSED:
            assert re.search(REFUSED[kind, accel], message), message
        return
    assert (kind, accel) not in REFUSED, f"{accel} applied to a {kind} UNet"
    handle.remove()


def test_block_granularity_still_runs_on_the_1d_unet_after_a_layer_refusal():
    unet = _unet_1d().eval()
    x = torch.randn(1, 2, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = unet(x, 900).sample
    with pytest.raises(ValueError, match="granularity: 'layer'"):
        unetlab.branch_cache(unet, granularity="layer")
    with unetlab.branch_cache(unet, interval=2), torch.no_grad():
        assert torch.equal(unet(x, 900).sample, plain)  # the first step is full


def test_codi_pipeline_and_task_refuse_a_grid_their_teacher_cannot_sample():
    from diffusers import DDPMScheduler

    from unetlab.codi import CoDiAdapter, CoDiLossConfig, CoDiPipeline
    from unetlab.codi.task import check_teacher

    unet = tiny_unet("ddpm")
    adapter = CoDiAdapter.from_unet(unet, 3, 4, torch.Generator().manual_seed(0))
    scheduler = DDPMScheduler(num_train_timesteps=100)
    with pytest.raises(
        ValueError, match=r"t_max: expected a training timestep of the scheduler's 100, 1 to 99; got 900"
    ):
        CoDiPipeline(unet=unet, adapter=adapter, scheduler=scheduler)
    CoDiPipeline(unet=unet, adapter=adapter, scheduler=scheduler, t_max=99, grid_size=4)
    teacher = unetlab.load("digits")
    with pytest.raises(ValueError, match="t_max: 1000 is not a training timestep of the teacher's 1000"):
        check_teacher(teacher, 1, CoDiLossConfig(t_max=1000))
    with pytest.raises(ValueError, match="teacher: its UNet takes 1-channel images, the data has 3"):
        check_teacher(teacher, 3, CoDiLossConfig())
