"""Latent text-to-image training (Rombach et al. 2022, Eq. 2): a `UNet2DConditionModel` and a `CLIPTextModel`
trained jointly on the latents of a frozen `AutoencoderKL`, with caption dropout for classifier-free guidance
(Ho & Salimans 2022, Alg. 1); saved as a plain diffusers `StableDiffusionPipeline`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

from .draws import Draws
from .target import target

SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def sd_training_scheduler() -> DDPMScheduler:
    """Stable Diffusion 1.x's training noise schedule (scaled linear betas 0.00085 -> 0.012, epsilon)."""
    return DDPMScheduler(**SD_SCHEDULE, prediction_type="epsilon", clip_sample=False)


def sd_sampling_scheduler() -> DDIMScheduler:
    """The DDIM scheduler of Stable Diffusion 1.5's `scheduler_config.json`."""
    return DDIMScheduler(
        **SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon"
    )


class LatentTextToImageTask:
    """Trains `unet` and `text_encoder` on {"images", "captions"} batches: x0 = `scaling_factor` * mean of
    q(z|x) under the frozen `vae`; captions dropped to "" with probability `p_uncond`."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder,
        tokenizer,
        vae: AutoencoderKL,
        dataset,
        sample_prompts: list[str],
        p_uncond: float = 0.1,
        guidance_scale: float = 7.5,
        sample_steps: int = 25,
    ):
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"p_uncond: {p_uncond!r} must lie in [0, 1)")
        self.unet, self.text_encoder, self.tokenizer, self.dataset = unet, text_encoder, tokenizer, dataset
        self.vae = vae.eval().requires_grad_(False)
        self.scheduler = sd_training_scheduler()
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()
        self.sample_prompts, self.p_uncond = sample_prompts, p_uncond
        self.guidance_scale, self.sample_steps = guidance_scale, sample_steps

    def modules(self) -> dict:
        return {"unet": self.unet, "text_encoder": self.text_encoder}

    def to(self, device) -> None:
        self.vae.to(device)

    def token_ids(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """|| eps - eps_theta(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, tau(y)) ||^2 (Rombach et al. 2022, Eq. 3)."""
        with torch.no_grad():
            x0 = self.vae.encode(batch["images"] * 2 - 1).latent_dist.mean * self.vae.config.scaling_factor
        b = x0.shape[0]
        draw = Draws(batch, generator)
        drop = draw.rand(b) < self.p_uncond
        captions = ["" if d else c for d, c in zip(drop.tolist(), batch["captions"])]
        t = draw.randint(len(self.alphas_cumprod), b)
        eps = draw.randn(x0.shape).to(x0.device)
        abar_t = self.alphas_cumprod[t].to(x0.device).view(b, 1, 1, 1)
        x_t = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps
        c = models["text_encoder"](self.token_ids(captions).to(x0.device))[0]
        prediction = models["unet"](x_t, t.to(x0.device), encoder_hidden_states=c).sample
        return F.mse_loss(prediction, target(self.scheduler, x0, eps, t))

    def pipeline(self, models: dict) -> StableDiffusionPipeline:
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=models["text_encoder"],
            tokenizer=self.tokenizer,
            unet=models["unet"],
            scheduler=sd_sampling_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
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
        from ..models.clip_vocab import write_bpe_files

        self.pipeline(models).save_pretrained(directory)
        write_bpe_files(self.tokenizer, Path(directory) / "tokenizer")


def make_scenes_task(
    vae_path: str, block_out_channels: tuple[int, ...], seed: int = 0, num_samples: int = 16
) -> LatentTextToImageTask:
    """`mini-sd`'s text-to-image task: SD-1.5-topology UNet at `block_out_channels`, a 4-layer CLIP text encoder,
    the grammar's tokenizer, the frozen autoencoder at `vae_path`, scenes' train split, test-split prompts."""
    from ..data import scenes
    from ..models.clip_vocab import grammar_tokenizer
    from ..models.configs import mini_sd_text_encoder, mini_sd_unet
    from ..seeding import seeded

    path = Path(vae_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"vae: {vae_path} is not an AutoencoderKL folder (config.json and weights; "
            "e.g. <run>/checkpoint-N/pipeline of `unetlab train autoencoder`)"
        )
    try:
        saved = json.loads((path / "config.json").read_text()).get("_class_name")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"vae: {path / 'config.json'} is not a JSON object ({err})") from None
    if saved != "AutoencoderKL":
        raise ValueError(
            f"vae: {vae_path} holds a {saved}, not an AutoencoderKL (e.g. <run>/checkpoint-N/pipeline of "
            "`unetlab train autoencoder`)"
        )
    vae = AutoencoderKL.from_pretrained(path)
    tokenizer = grammar_tokenizer(scenes.vocabulary(), model_max_length=32)
    with seeded(seed):
        text_encoder = mini_sd_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        unet = mini_sd_unet(tuple(block_out_channels), cross_attention_dim=text_encoder.config.hidden_size)
    prompts = scenes.sample(num_samples, seed=seed, split="test")[1]
    return LatentTextToImageTask(unet, text_encoder, tokenizer, vae, scenes.ScenesDataset("train", seed=seed), prompts)
