"""Autoencoder training task: a diffusers `AutoencoderKL` fitted by reconstruction error plus a small KL term
towards N(0, I), the first stage of latent diffusion (Rombach et al. 2022, Sec. 3: a KL-regularised autoencoder)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..metrics import mean_psnr
from .draws import Draws


class AutoencoderTask:
    """Trains `vae` on {"images"} batches in [0, 1]: || D(z) - x ||^2 + `kl_weight` KL(q(z|x) || N(0, I)),
    z drawn from q(z|x) (Rombach et al. 2022, Sec. 3, the KL-reg variant). `save` writes the VAE with its
    `scaling_factor` = 1 / std of the latents of `scale_images` (as Stable Diffusion's 0.18215 was set).
    `decoder_only`: the encoder (and `quant_conv`) frozen, || D(z) - x ||^2 alone trains the decoder, so the
    latents stay those a UNet was trained on."""

    def __init__(
        self,
        vae: AutoencoderKL,
        dataset,
        eval_images: torch.Tensor,
        kl_weight: float = 1e-6,
        decoder_only: bool = False,
    ):
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight: {kl_weight!r} must be >= 0")
        self.vae, self.dataset, self.eval_images, self.kl_weight = vae, dataset, eval_images, kl_weight
        self.decoder_only = decoder_only
        if decoder_only:
            vae.encoder.requires_grad_(False)
            vae.quant_conv.requires_grad_(False)

    def modules(self) -> dict:
        return {"vae": self.vae}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """|| D(z) - x ||^2 + w KL(q(z|x) || N(0, I)) per element, z = mu + sigma eps (Kingma & Welling 2014, Eq.
        10)."""
        vae = models["vae"]
        x = batch["images"] * 2 - 1
        with torch.set_grad_enabled(not self.decoder_only):
            posterior = vae.encode(x).latent_dist
        eps = Draws(batch, generator).randn(posterior.mean.shape).to(x.device)
        z = posterior.mean + posterior.std * eps
        recon = vae.decode(z).sample
        if self.decoder_only:
            return F.mse_loss(recon, x)
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean()
        return F.mse_loss(recon, x) + self.kl_weight * kl

    @torch.no_grad()
    def reconstruct(self, vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
        """D(mean of q(z|x)) of `images` in [0, 1], back in [0, 1]."""
        x = images.to(vae.device) * 2 - 1
        return ((vae.decode(vae.encode(x).latent_dist.mean).sample + 1) / 2).clamp(0, 1).cpu()

    def evaluate(self, models: dict) -> dict:
        recon = self.reconstruct(models["vae"], self.eval_images)
        return {"test_psnr": mean_psnr(recon, self.eval_images)}

    def sample(self, models: dict, generator: torch.Generator) -> torch.Tensor:
        """Originals and reconstructions of the first 16 evaluation images, interleaved."""
        images = self.eval_images[:16]
        recon = self.reconstruct(models["vae"], images)
        return torch.stack([images, recon], 1).flatten(0, 1)

    @torch.no_grad()
    def scaling_factor(self, vae: AutoencoderKL) -> float:
        """1 / std of the posterior means of the evaluation images (Rombach et al. 2022, Sec. G: unit variance)."""
        z = vae.encode(self.eval_images.to(vae.device) * 2 - 1).latent_dist.mean
        return float(1.0 / z.float().std())

    def save(self, models: dict, directory: Path) -> None:
        vae = models["vae"]
        vae.register_to_config(scaling_factor=self.scaling_factor(vae))
        vae.save_pretrained(directory)
