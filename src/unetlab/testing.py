"""Tiny random UNets of every supported family (diffusers-test sized), for tests, demos and smoke runs."""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel, UNet2DModel

FAMILIES = ("ddpm", "ddpm_skip", "ddpm_fourier", "sd", "sdxl", "if_stage1", "if_stage2")


def _conditional(**overrides) -> dict:
    base = dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    base.update(overrides)
    return base


def tiny_config(family: str) -> tuple[type, dict]:
    """(model class, config kwargs) for a tiny UNet of `family` (one of `FAMILIES`)."""
    if family == "ddpm":
        return UNet2DModel, dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(8, 16, 16),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            attention_head_dim=4,
        )
    if family == "ddpm_skip":
        return UNet2DModel, dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(32, 32),
            down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
            up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
            attention_head_dim=8,
        )
    if family == "ddpm_fourier":
        return UNet2DModel, dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            time_embedding_type="fourier",
            flip_sin_to_cos=False,
        )
    if family == "sd":
        return UNet2DConditionModel, _conditional(
            block_out_channels=(8, 16, 16),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        )
    if family == "sdxl":
        return UNet2DConditionModel, _conditional(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=4,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=32,
            cross_attention_dim=16,
        )
    if family in ("if_stage1", "if_stage2"):
        cfg = _conditional(
            in_channels=3,
            out_channels=6,
            down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn",
            up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
            cross_attention_dim=32,
            encoder_hid_dim=12,
            addition_embed_type="text",
            addition_embed_type_num_heads=2,
            cross_attention_norm="group_norm",
            resnet_time_scale_shift="scale_shift",
            act_fn="gelu",
        )
        if family == "if_stage2":
            cfg.update(
                in_channels=6,
                class_embed_type="timestep",
                mid_block_scale_factor=1.414,
                time_embedding_act_fn="gelu",
                time_embedding_dim=32,
            )
        return UNet2DConditionModel, cfg
    raise ValueError(f"family: {family!r} is not one of {', '.join(FAMILIES)}")


def tiny_unet(family: str, seed: int = 0, **overrides):
    """A tiny randomly initialised UNet of `family`, with `overrides` applied to its config."""
    cls, cfg = tiny_config(family)
    cfg.update(overrides)
    torch.manual_seed(seed)
    unet = cls(**cfg).eval()
    _randomize_zero_inits(unet, seed)
    return unet


def tiny_controlnet(unet: UNet2DConditionModel, seed: int = 1) -> ControlNetModel:
    """A ControlNet copied from `unet`, with its zero convolutions randomised so that residuals are non-zero."""
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 8, 8)).eval()
    _randomize_zero_inits(net, seed)
    return net


def _randomize_zero_inits(model: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised layers (output convs, ControlNet zero convs) small random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def tiny_sd_pipeline(unet: UNet2DConditionModel | None = None, scheduler=None):
    """A `StableDiffusionPipeline` around a tiny UNet, without VAE, tokenizer or text encoder: call it with
    `prompt_embeds` (and `negative_prompt_embeds` when guiding) and `output_type="latent"`; height and width
    are in pixels (8 per latent element)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = (
        scheduler if scheduler is not None else DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    )
    pipe = StableDiffusionPipeline(
        vae=None,
        text_encoder=None,
        tokenizer=None,
        unet=unet or tiny_unet("sd"),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_shapes_pipeline():
    """A `ShapesPipeline` (unetlab's text-to-image pipeline with its word tokenizer) around a tiny UNet and text
    encoder, seeded with 0."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from .models import ShapesPipeline, TextEncoder
    from .models.text import shapes_vocabulary

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    text = TextEncoder(vocab=shapes_vocabulary(), max_length=12, hidden_size=16, num_layers=1, num_heads=2)
    scheduler = DDIMScheduler.from_config(DDPMScheduler(beta_schedule="squaredcos_cap_v2").config)
    pipe = ShapesPipeline(unet=unet.eval(), text_encoder=text.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
