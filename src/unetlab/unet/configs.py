"""Published UNet configurations (random weights), for speed-only benchmarks at real shapes."""

from __future__ import annotations

from diffusers import UNet2DConditionModel

SD15 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)


def sd15_like(scale: int = 1, **overrides) -> UNet2DConditionModel:
    """Stable Diffusion 1.5's UNet layout with channels divided by `scale` (1 = full size; 10 = (32, 64, 128, 128))."""
    if scale not in (1, 10):
        raise ValueError(f"scale: expected 1 (full size) or 10 (channels / 10), got {scale}")
    cfg = dict(SD15)
    if scale == 10:
        cfg.update(block_out_channels=(32, 64, 128, 128), attention_head_dim=8, norm_num_groups=32)
    cfg.update(overrides)
    return UNet2DConditionModel(**cfg)


SDXL = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),  # diffusers' name for the head counts: 64 channels per head
    use_linear_projection=True,
    cross_attention_dim=2048,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # the 1280-wide pooled text embedding + 6 time ids x 256
    norm_num_groups=32,
)


def sdxl_like(scale: int = 1, **overrides) -> UNet2DConditionModel:
    """SDXL base's UNet layout (`text_time` added conditioning) with channels divided by `scale` (1 = full size;
    10 = (32, 64, 128) with 2, 4 and 8 heads of 16 channels each)."""
    if scale not in (1, 10):
        raise ValueError(f"scale: expected 1 (full size) or 10 (channels / 10), got {scale}")
    cfg = dict(SDXL)
    if scale == 10:
        cfg.update(block_out_channels=(32, 64, 128), attention_head_dim=(2, 4, 8))
    cfg.update(overrides)
    return UNet2DConditionModel(**cfg)
