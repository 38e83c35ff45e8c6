"""Architectures of the models unetlab ships (sized for training on a 2-core CPU)."""

from __future__ import annotations

from diffusers import UNet2DConditionModel, UNet2DModel


def digits_unet(sample_size: int = 16, channels: int = 1) -> UNet2DModel:
    """The unconditional digits UNet: 3 levels (32, 64, 96), self-attention at the 4x4 level, ~1.8M parameters."""
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(32, 64, 96), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=16)


def shapes_unet(sample_size: int = 24, channels: int = 3, cross_attention_dim: int = 64) -> UNet2DConditionModel:
    """The text-conditional shapes UNet: 3 levels (32, 64, 64), cross-attention at the coarsest level and the middle."""
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=cross_attention_dim, attention_head_dim=16,
        norm_num_groups=8)
