"""Tiny pipelines for the encoder-propagation tests (saved with save_pretrained and loaded back), and the
reference implementation of the method the tests compare against: sequential, naive, written independently
of unetlab's handle (plain attribute patches, a call counter, no StepClock, no batching)."""

from __future__ import annotations

import contextlib
import functools

import torch
from diffusers import (
    AutoencoderKL,
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    IFPipeline,
    IFSuperResolutionPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from unetlab.testing import tiny_controlnet, tiny_unet
from unetlab.unet import decode, encode

SD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
NO_TEXT = dict(text_encoder=None, tokenizer=None)


def _vae():
    """A tiny VAE with scale factor 8 (it only fixes the latent size; the tests ask for latents)."""
    return AutoencoderKL(
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=2,
        latent_channels=4,
    )


def _embeds(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def build(kind: str, path) -> tuple[object, dict]:
    """(pipeline loaded back from `path`, keyword arguments of a call without step count or generator)."""
    if kind == "sd":
        pipe = StableDiffusionPipeline(
            vae=_vae(),
            unet=tiny_unet("sd"),
            scheduler=DDIMScheduler(**SD_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **NO_TEXT,
        )
        kwargs = dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            height=64,
            width=64,
            output_type="latent",
        )
        extra = dict(**NO_TEXT, safety_checker=None, feature_extractor=None)
    elif kind == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=_vae(),
            unet=tiny_unet("sdxl"),
            scheduler=DDIMScheduler(**SD_SCHEDULER),
            text_encoder_2=None,
            tokenizer_2=None,
            add_watermarker=False,
            **NO_TEXT,
        )
        kwargs = dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            pooled_prompt_embeds=_embeds(1, 8, seed=3),
            negative_pooled_prompt_embeds=_embeds(1, 8, seed=4),
            height=64,
            width=64,
            output_type="latent",
        )
        extra = dict(**NO_TEXT, text_encoder_2=None, tokenizer_2=None)
    elif kind == "controlnet":
        unet = tiny_unet("sd")
        pipe = StableDiffusionControlNetPipeline(
            vae=_vae(),
            unet=unet,
            controlnet=tiny_controlnet(unet),
            scheduler=DDIMScheduler(**SD_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **NO_TEXT,
        )
        kwargs = dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            image=torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)),
            height=64,
            width=64,
            output_type="latent",
        )
        extra = dict(**NO_TEXT, safety_checker=None, feature_extractor=None)
    elif kind in ("if_stage1", "if_stage2"):
        scheduler = DDPMScheduler(variance_type="learned_range", beta_schedule="squaredcos_cap_v2")
        common = dict(
            unet=tiny_unet(kind),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            watermarker=None,
            requires_safety_checker=False,
            **NO_TEXT,
        )
        kwargs = dict(
            prompt_embeds=_embeds(1, 5, 12, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 12, seed=2),
            height=16,
            width=16,
            output_type="pt",
        )
        if kind == "if_stage1":
            pipe = IFPipeline(**common)
        else:
            pipe = IFSuperResolutionPipeline(image_noising_scheduler=DDPMScheduler(), **common)
            kwargs.update(
                image=torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6)) * 2 - 1, noise_level=100
            )
        extra = dict(**NO_TEXT, safety_checker=None, feature_extractor=None, watermarker=None)
    elif kind in ("ddpm", "ddim"):
        cls, sch = (DDPMPipeline, DDPMScheduler) if kind == "ddpm" else (DDIMPipeline, DDIMScheduler)
        pipe = cls(unet=tiny_unet("ddpm"), scheduler=sch())
        kwargs, extra = dict(output_type="np", batch_size=2), {}
    else:
        raise ValueError(kind)
    pipe.save_pretrained(path)
    pipe = type(pipe).from_pretrained(path, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def call(pipe, kwargs, steps: int, seed: int = 0, **more) -> torch.Tensor:
    out = pipe(**kwargs, **more, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed))
    images = out.images
    return torch.as_tensor(images).clone()


@contextlib.contextmanager
def in_float64(pipe, kwargs):
    """The pipeline and its call's tensors in float64, back to float32 after. Parallel decoding runs the decoder at
    another batch size than one-at-a-time decoding, so in float32 the two differ by the CPU's batch-size rounding
    (about 1e-6 relative per call, more on some CPUs); in float64 that noise is ~1e-15 and a 1e-10 bound is
    a real check of the method."""
    pipe.to(torch.float64)
    try:
        yield {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
    finally:
        pipe.to(torch.float32)


@contextlib.contextmanager
def reference(pipe, key_steps, alpha=0.003, threshold=500):
    """Faster Diffusion done by hand: full UNet (encode + decode) at key steps, decoder only on the cached state
    with the call's own timestep elsewhere; `z <- z + alpha * z_T` before each step whose timestep < threshold."""
    unet, scheduler = pipe.unet, pipe.scheduler
    keys = set(key_steps)
    memo = {"i": 0, "state": None, "z_T": None}
    original_step = scheduler.step
    output = UNet2DConditionOutput if hasattr(unet, "add_embedding") else UNet2DOutput

    def forward(sample, timestep, *args, return_dict=True, **kwargs):
        assert not args
        cond = {k: v for k, v in kwargs.items() if v is not None}
        if memo["i"] in keys:
            memo["state"] = encode(unet, sample, timestep, **cond)
        out = decode(unet, memo["state"], [timestep])
        return output(sample=out) if return_dict else (out,)

    @functools.wraps(original_step)  # pipelines inspect step's signature to pass eta and generator
    def step(model_output, timestep, sample, *args, **kwargs):
        i = memo["i"]
        if i == 0:
            memo["z_T"], memo["timesteps"] = sample.clone(), scheduler.timesteps.tolist()
        if alpha is not None and memo["timesteps"][i] < threshold:
            sample = sample + alpha * memo["z_T"]
        memo["i"] += 1
        return original_step(model_output, timestep, sample, *args, **kwargs)

    unet.forward, scheduler.step = forward, step
    try:
        yield memo
    finally:
        del unet.forward, scheduler.step
