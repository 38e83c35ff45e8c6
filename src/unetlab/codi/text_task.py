"""CoDi on a latent text-to-image teacher (Mei et al. 2024, Sec. 4.1: Stable Diffusion adapted to super-resolution
and inpainting): `CoDiTask`'s loss on the frozen autoencoder's latents, with the caption through the frozen text
encoder, dropped to "" at `caption_dropout` (the adapted model also learns the unconditional output, and, as
ControlNet's 50% (Zhang et al. 2023), must read the condition itself)."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from ..train.draws import Draws
from .consistency import timestep_grid
from .degrade import degrade, drawn_box_masks
from .loss import CoDiLossConfig
from .task import CoDiTask, CoDiTaskConfig
from .text_pipeline import TextCoDiPipeline

TEACHER_PARTS = ("vae", "text_encoder", "tokenizer", "unet")


def check_text_teacher(teacher_pipe, loss: CoDiLossConfig) -> None:
    """One-line errors for a teacher that is not a latent text-to-image pipeline CoDi can adapt with `loss`'s grid."""
    missing = [part for part in TEACHER_PARTS if getattr(teacher_pipe, part, None) is None]
    if missing:
        raise ValueError(
            f"teacher: {type(teacher_pipe).__name__} has no {', '.join(missing)}; a text-to-image teacher is a "
            "StableDiffusionPipeline (mini-sd, or its save_pretrained folder)"
        )
    if isinstance(teacher_pipe, TextCoDiPipeline):
        raise ValueError(
            "teacher: a TextCoDiPipeline is already image-conditioned; give the text-to-image pipeline it was "
            "adapted from (e.g. mini-sd)"
        )
    if not isinstance(teacher_pipe.unet, UNet2DConditionModel):
        raise ValueError(f"teacher: its UNet is a {type(teacher_pipe.unet).__name__}, not a UNet2DConditionModel")
    steps = teacher_pipe.scheduler.config.num_train_timesteps
    if loss.t_max >= steps:
        raise ValueError(
            f"t_max: {loss.t_max} is not a training timestep of the teacher's {steps}; expected 1 to {steps - 1}"
        )
    timestep_grid(loss.grid_size, loss.t_max)


class TextCoDiTask(CoDiTask):
    """Adapts a `StableDiffusionPipeline`'s UNet to `cfg.task` on {"images", "captions"} batches (images in [0, 1]
    at the autoencoder's input size); x_0 = `scaling_factor` * the mean of q(z|x), as the teacher was trained."""

    def __init__(self, teacher_pipe, dataset, cfg: CoDiTaskConfig, caption_dropout: float = 0.1):
        if not 0.0 <= caption_dropout < 1.0:
            raise ValueError(f"caption_dropout: {caption_dropout!r} must lie in [0, 1)")
        super().__init__(teacher_pipe, dataset, cfg)
        self.vae = teacher_pipe.vae.eval().requires_grad_(False)
        self.text_encoder = teacher_pipe.text_encoder.eval().requires_grad_(False)
        self.tokenizer, self.caption_dropout = teacher_pipe.tokenizer, caption_dropout
        self.sample_prompts = list(dataset[torch.arange(cfg.num_samples)]["captions"])

    def _check(self, teacher_pipe, dataset, cfg: CoDiTaskConfig) -> None:
        check_text_teacher(teacher_pipe, cfg.loss)

    def _image_shape(self, teacher_pipe) -> tuple[int, int]:
        """(3, the autoencoder's image size): conditions are made from the scene, not from its latents."""
        vae = teacher_pipe.vae.config
        return vae.in_channels, self.teacher.config.sample_size * 2 ** (len(vae.block_out_channels) - 1)

    def to(self, device) -> None:
        super().to(device)
        self.vae.to(device)
        self.text_encoder.to(device)

    def _inputs(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, dict]:
        images = batch["images"]
        masks = drawn_box_masks(len(images), images.shape[-1], draws) if self.cfg.task == "inpaint" else None
        condition = degrade(self.cfg.task, images, masks=masks)
        drop = draws.rand(len(images)) < self.caption_dropout
        captions = ["" if d else c for d, c in zip(drop.tolist(), batch["captions"])]
        device = next(self.vae.parameters()).device
        with torch.no_grad():
            x0 = self.vae.encode(images.to(device) * 2 - 1).latent_dist.mean * self.vae.config.scaling_factor
            ids = self.tokenizer(
                captions,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            text = self.text_encoder(ids.to(device))[0]
        return x0, condition.to(device), {"encoder_hidden_states": text}

    def pipeline(self, models: dict) -> TextCoDiPipeline:
        unet, adapter = self._parts(models)
        return TextCoDiPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=unet,
            adapter=adapter,
            scheduler=DDIMScheduler.from_config(self.scheduler.config),
            sampler="ddim" if self.cfg.variant == "controlnet" else "consistency",
            grid_size=self.cfg.loss.grid_size,
            t_max=self.cfg.loss.t_max,
        )

    def _sample_inputs(self) -> dict:
        return {"prompt": self.sample_prompts, "image": self.sample_conditions}

    def save(self, models: dict, directory) -> None:
        from pathlib import Path

        from ..models.clip_vocab import write_bpe_files

        self.pipeline(models).save_pretrained(directory)
        write_bpe_files(self.tokenizer, Path(directory) / "tokenizer")
