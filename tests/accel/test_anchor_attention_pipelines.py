"""Anchor attention inside diffusers' image-editing pipelines (img2img and ControlNet img2img: 2 guidance copies,
InstructPix2Pix: 3): each frame of `edit_video` equals the pipeline run on the whole video with the UNet's
cross-frame attention written by hand (the ControlNet keeps its own per-frame attention)."""

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInstructPix2PixPipeline,
)

from helpers.cross_frame_reference import ReferenceCrossFrame, self_attention
from unetlab.testing import tiny_unet
from unetlab.video import edit_video


def _pipe(cls, in_channels):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )
    unet = tiny_unet("sd", in_channels=in_channels)
    parts = dict(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    if cls is StableDiffusionControlNetImg2ImgPipeline:
        parts["controlnet"] = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)).eval()
    pipe = cls(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch.float64)


@pytest.mark.parametrize(
    "cls,in_channels,copies,extra",
    [
        (StableDiffusionImg2ImgPipeline, 4, 2, dict(strength=0.75)),
        (StableDiffusionInstructPix2PixPipeline, 8, 3, dict(image_guidance_scale=1.5)),
        (StableDiffusionControlNetImg2ImgPipeline, 4, 2, dict(strength=0.75)),
    ],
)
def test_edit_video_frames_equal_cross_frame_attention_on_the_whole_video(cls, in_channels, copies, extra):
    pipe = _pipe(cls, in_channels)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64)
    embeds = {
        "prompt_embeds": torch.randn(4, 5, 16, generator=g, dtype=torch.float64),
        "negative_prompt_embeds": torch.randn(4, 5, 16, generator=g, dtype=torch.float64),
    }
    if "controlnet" in pipe.components:
        embeds["control_image"] = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64)
    kw = dict(num_inference_steps=4, guidance_scale=6.0, **extra)
    anchors = [0, 3]
    got = edit_video(pipe, frames, None, anchors=anchors, own_kv=True, batch_size=1, frame_kwargs=embeds, **kw)
    alone = edit_video(pipe, frames, None, batch_size=4, frame_kwargs=embeds, **kw)
    for m in self_attention(pipe.unet).values():
        m.set_processor(ReferenceCrossFrame(copies, 4, anchors, own=True))
    ref = pipe(
        image=frames, output_type="pt", generator=[torch.Generator().manual_seed(0) for _ in range(4)], **embeds, **kw
    ).images
    assert (
        (got - ref).abs().max() / ref.abs().max()
    ).item() < 1e-10  # float64: img2img 2.2e-15, InstructPix2Pix 4.0e-15 measured
    assert (alone - ref).abs().max() > 1e-4  # the frames really attended across frames
