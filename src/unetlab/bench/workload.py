"""The workloads of `unetlab bench` and `unetlab tune`: the shipped models, a user's pipeline, or a random
SD-1.5-shaped UNet for speed only."""

from __future__ import annotations

import inspect

import torch

from ..eval.workload import Workload

DEFAULT_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "a red circle at the top left on a blue background",
    "a watercolor painting of a lighthouse",
    "a bowl of fruit on a wooden table",
]


def shipped_workload(name: str) -> Workload:
    """The shipped `digits` (unconditional DDIM), `shapes` (text-to-image, guidance 5) or `mini-sd` (a plain
    StableDiffusionPipeline, test-split captions, guidance 7.5, judged by the scene judge) model."""
    from ..loading import load

    pipe = load(name)
    pipe.set_progress_bar_config(disable=True)
    if name == "shapes":
        from ..data.shapes import heldout_captions

        return Workload(
            name, pipe, heldout_captions(500), "shapes", guidance_scale=5.0, call_kwargs={"output_type": "np"}
        )
    if name == "mini-sd":
        from ..data.scenes import sample

        return Workload(
            name,
            pipe,
            sample(500, seed=0, split="test")[1],
            "mini-sd",
            guidance_scale=7.5,
            call_kwargs={"output_type": "np"},
        )
    return Workload(name, pipe, None, "digits", call_kwargs={"output_type": "np"})


def user_workload(path: str, prompts: list[str] | None = None) -> Workload:
    """A user's diffusers pipeline (SD 1.x/2.x, SDXL, IF, ControlNet, DDPM) from a folder or hub id."""
    from ..loading import load

    pipe = load(path)
    pipe.set_progress_bar_config(disable=True)
    takes_prompt = "prompt" in inspect.signature(pipe.__call__).parameters
    return Workload(
        str(path), pipe, (prompts or DEFAULT_PROMPTS) if takes_prompt else None, None, call_kwargs={"output_type": "np"}
    )


def sd15_random_pipeline(scale: int = 10, sample_size: int = 64, seed: int = 0):
    """A `StableDiffusionPipeline` around a random SD-1.5-shaped UNet (channels / `scale`) with SD's DDIM
    scheduler; no text encoder (pass prompt embeddings) and no VAE (use `output_type="latent"`)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from ..unet.configs import sd15_like

    torch.manual_seed(seed)
    unet = sd15_like(scale=scale, sample_size=sample_size).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=None,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd15_workload(seed: int = 0, sample_size: int = 64, scale: int = 10) -> Workload:
    """Speed only: `sd15_random_pipeline`, guidance on, random prompt embeddings standing in for the text
    encoder, latents out (no VAE)."""
    pipe = sd15_random_pipeline(scale, sample_size, seed)
    unet = pipe.unet
    embeds = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(seed))
    size = sample_size * 8
    return Workload(
        f"sd15-random/{scale}",
        pipe,
        None,
        None,
        guidance_scale=7.5,
        speed_only=True,
        call_kwargs={"embeds": embeds, "height": size, "width": size, "output_type": "latent"},
    )


SHIPPED_WORKLOADS = ("mini-sd", "digits", "shapes")


def workload_for(model: str, arch: str | None = None, random_weights: bool = False) -> Workload:
    """The workload for a shipped model name, a user pipeline, or `--arch sd15 --random-weights`."""
    if arch is not None:
        if arch != "sd15" or not random_weights:
            raise ValueError("arch: only `--arch sd15 --random-weights` (speed-only, SD-1.5 shape) is available")
        return sd15_workload()
    if random_weights:
        raise ValueError("random_weights: only valid together with arch='sd15'")
    return shipped_workload(model) if model in SHIPPED_WORKLOADS else user_workload(model)
