"""DDPM training task: epsilon- (Ho et al. 2020, Eq. 14) or v-prediction loss for an unconditional `UNet2DModel`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel

from .draws import Draws
from .target import target, training_scheduler


class DDPMTask:
    """Unconditional DDPM on images in [0, 1] (scaled to [-1, 1]); samples and saves a `DDIMPipeline`.
    The UNet predicts what `scheduler.config.prediction_type` names (default: `training_scheduler()`, epsilon)."""

    def __init__(
        self,
        unet: UNet2DModel,
        dataset,
        scheduler: DDPMScheduler | None = None,
        num_samples: int = 64,
        sample_steps: int = 50,
    ):
        self.unet, self.dataset = unet, dataset
        self.scheduler = scheduler or training_scheduler()
        self.num_samples, self.sample_steps = num_samples, sample_steps
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()

    def modules(self) -> dict:
        return {"unet": self.unet}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """E_{x0, eps, t} || target - f_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2 (Ho et al. 2020, Eq.
        14)."""
        x0 = batch["images"] * 2 - 1
        b = x0.shape[0]
        draw = Draws(batch, generator)
        t = draw.randint(len(self.alphas_cumprod), b)
        eps = draw.randn(x0.shape).to(x0.device)
        abar_t = self.alphas_cumprod[t].to(x0.device).view(b, 1, 1, 1)
        x_t = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps
        prediction = models["unet"](x_t, t.to(x0.device)).sample
        return F.mse_loss(prediction, target(self.scheduler, x0, eps, t))

    def pipeline(self, models: dict) -> DDIMPipeline:
        return DDIMPipeline(unet=models["unet"], scheduler=DDIMScheduler.from_config(self.scheduler.config))

    def sample(self, models: dict, generator: torch.Generator) -> torch.Tensor:
        pipe = self.pipeline(models)
        pipe.set_progress_bar_config(disable=True)
        images = pipe(
            batch_size=self.num_samples, generator=generator, num_inference_steps=self.sample_steps, output_type="np"
        ).images
        return torch.from_numpy(images).permute(0, 3, 1, 2)

    def save(self, models: dict, directory: Path) -> None:
        self.pipeline(models).save_pretrained(directory)
