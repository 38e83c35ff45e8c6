"""What the benchmark samples from: a pipeline, how to call it reproducibly, and how to judge its images."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "a red circle at the top left on a blue background",
    "a watercolor painting of a lighthouse",
    "a bowl of fruit on a wooden table",
]


@dataclass
class Workload:
    """A pipeline plus everything needed to call it the same way for every method."""

    name: str
    pipe: object
    prompts: list[str] | None  # None: unconditional pipeline
    quality_model: str | None  # "digits" / "shapes" / "mini-sd": shipped evaluation classifiers or judge apply
    guidance_scale: float | None = None
    call_kwargs: dict = field(default_factory=dict)  # extra fixed arguments (prompt embeddings, sizes)
    speed_only: bool = False

    @property
    def unet(self):
        return self.pipe.unet

    def generate(self, num_images: int, steps: int, seed: int = 0) -> torch.Tensor:
        """`num_images` images (N, C, H, W) in [0, 1] (latents for speed-only workloads); image i uses seed+i."""
        generators = [torch.Generator().manual_seed(seed + i) for i in range(num_images)]
        kwargs = dict(self.call_kwargs, num_inference_steps=steps, generator=generators)
        if self.prompts is not None:
            kwargs["prompt"] = [self.prompts[(seed + i) % len(self.prompts)] for i in range(num_images)]
        elif "batch_size" in inspect.signature(self.pipe.__call__).parameters:
            kwargs["batch_size"] = num_images
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        if "embeds" in kwargs:  # speed-only: prompt embeddings stand in for a text encoder
            embeds = kwargs.pop("embeds")
            kwargs.pop("prompt", None)
            kwargs["prompt_embeds"] = embeds[:1].expand(num_images, *embeds.shape[1:])
            kwargs["negative_prompt_embeds"] = torch.zeros_like(kwargs["prompt_embeds"])
        with torch.inference_mode():
            out = self.pipe(**kwargs)
        images = out.images if hasattr(out, "images") else out[0]
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images).permute(0, 3, 1, 2)
        return images.float().cpu()

    def labels(self, num_images: int, seed: int = 0) -> list[str] | None:
        """The prompts of the images `generate(num_images, seed=seed)` makes (None when unconditional)."""
        if self.prompts is None:
            return None
        return [self.prompts[(seed + i) % len(self.prompts)] for i in range(num_images)]


def shipped_workload(name: str) -> Workload:
    """The shipped `digits` (unconditional DDIM), `shapes` (text-to-image, guidance 5) or `mini-sd` (a plain
    StableDiffusionPipeline, test-split captions, guidance 7.5, judged by the scene judge) model."""
    from ..models import load

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
    from ..models import load

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
