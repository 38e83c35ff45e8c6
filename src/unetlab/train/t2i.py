"""Text-to-image training task: epsilon- or v-prediction loss with caption dropout for classifier-free guidance
(Ho & Salimans 2022, Algorithm 1) on a pixel-space `UNet2DConditionModel` and a jointly trained `TextEncoder`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from ..models.pipeline import ShapesPipeline
from ..models.text import TextEncoder
from ..seeding import seeded
from .draws import Draws
from .target import target, training_scheduler


class TextToImageTask:
    """Trains `unet` and `text_encoder` on {"images", "captions"} batches; captions dropped to "" with `p_uncond`.
    The UNet predicts what `scheduler.config.prediction_type` names (default: `training_scheduler()`, epsilon)."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: TextEncoder,
        dataset,
        sample_prompts: list[str],
        scheduler: DDPMScheduler | None = None,
        p_uncond: float = 0.1,
        guidance_scale: float = 5.0,
        sample_steps: int = 50,
    ):
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"p_uncond: {p_uncond!r} must lie in [0, 1)")
        self.unet, self.text_encoder, self.dataset = unet, text_encoder, dataset
        self.scheduler = scheduler or training_scheduler()
        self.sample_prompts, self.p_uncond = sample_prompts, p_uncond
        self.guidance_scale, self.sample_steps = guidance_scale, sample_steps
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()
        self.tokenizer = text_encoder.tokenizer

    def modules(self) -> dict:
        return {"unet": self.unet, "text_encoder": self.text_encoder}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """|| target - f_theta(x_t, t, c) ||^2, target eps or v, c = "" at probability p_uncond (Ho & Salimans 2022,
        Alg. 1)."""
        x0 = batch["images"] * 2 - 1
        b = x0.shape[0]
        draw = Draws(batch, generator)
        drop = draw.rand(b) < self.p_uncond
        captions = ["" if d else c for d, c in zip(drop.tolist(), batch["captions"])]
        t = draw.randint(len(self.alphas_cumprod), b)
        eps = draw.randn(x0.shape).to(x0.device)
        abar_t = self.alphas_cumprod[t].to(x0.device).view(b, 1, 1, 1)
        x_t = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps
        c = models["text_encoder"](self.tokenizer(captions).to(x0.device))
        prediction = models["unet"](x_t, t.to(x0.device), encoder_hidden_states=c).sample
        return F.mse_loss(prediction, target(self.scheduler, x0, eps, t))

    def pipeline(self, models: dict) -> ShapesPipeline:
        return ShapesPipeline(
            unet=models["unet"],
            text_encoder=models["text_encoder"],
            scheduler=DDIMScheduler.from_config(self.scheduler.config),
        )

    def sample(self, models: dict, generator: torch.Generator) -> torch.Tensor:
        pipe = self.pipeline(models)
        pipe.set_progress_bar_config(disable=True)
        return pipe(
            self.sample_prompts,
            guidance_scale=self.guidance_scale,
            num_inference_steps=self.sample_steps,
            generator=generator,
            output_type="pt",
        ).images

    def save(self, models: dict, directory: Path) -> None:
        self.pipeline(models).save_pretrained(directory)


def make_shapes_task(
    size: int = 24, seed: int = 0, num_samples: int = 32, prediction_type: str = "epsilon"
) -> TextToImageTask:
    """The shapes text-to-image task: `shapes_unet`, a 2-layer `TextEncoder`, training split, held-out prompts."""
    from ..data.shapes import ShapesDataset, heldout_captions
    from ..models.configs import shapes_unet
    from ..models.text import shapes_vocabulary

    scheduler = training_scheduler(prediction_type)
    with seeded(seed):
        text_encoder = TextEncoder(vocab=shapes_vocabulary(), max_length=12, hidden_size=64, num_layers=2, num_heads=4)
        unet = shapes_unet(size, 3, cross_attention_dim=64)
    return TextToImageTask(
        unet,
        text_encoder,
        ShapesDataset("train", size, length=1_000_000, seed=seed),
        heldout_captions(num_samples, seed=seed),
        scheduler=scheduler,
    )
