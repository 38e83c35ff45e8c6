"""What a model is sampled and judged on: a pipeline, how to call it the same way every time, and which shipped judge
applies to its images (the bench's and the tuner's workloads, the Clockwork adaptor's distillation data)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Workload:
    """A pipeline plus everything needed to call it the same way for every method."""

    name: str
    pipe: Any  # a diffusers pipeline
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
        if "embeds" in kwargs:  # speed-only: prompt embeddings stand in for the text encoders
            kwargs.pop("prompt", None)
            to = dict(device=self.pipe.device, dtype=self.unet.dtype)  # SDXL's pipeline casts none without encoders
            for name, key in (("embeds", "prompt_embeds"), ("pooled_embeds", "pooled_prompt_embeds")):
                if name in kwargs:
                    embeds = kwargs.pop(name).to(**to)
                    kwargs[key] = embeds[:1].expand(num_images, *embeds.shape[1:])
                    kwargs[f"negative_{key}"] = torch.zeros_like(kwargs[key])
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
