"""Architectures of the models unetlab ships (sized for training on a 2-core CPU)."""

from __future__ import annotations

from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel


def digits_unet(sample_size: int = 16, channels: int = 1) -> UNet2DModel:
    """The unconditional digits UNet: 3 levels (32, 64, 96), self-attention at the 4x4 level, ~1.8M parameters."""
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(32, 64, 96),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=16,
    )


def shapes_unet(sample_size: int = 24, channels: int = 3, cross_attention_dim: int = 64) -> UNet2DConditionModel:
    """The text-conditional shapes UNet: 3 levels (32, 64, 64), cross-attention at the coarsest level and the middle."""
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=16,
        norm_num_groups=8,
    )


def mini_sd_vae() -> AutoencoderKL:
    """`mini-sd`'s first stage: a KL autoencoder 64x64x3 -> 16x16x4 (f = 4; SD's has f = 8 at 512x512), ~1M
    parameters."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=64,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=16,
    )


MINI_SD_CHANNELS = (32, 64, 128, 128)  # the CPU configuration; the GPU configuration doubles them: (64, 128, 256, 256)


def mini_sd_unet(
    block_out_channels: tuple[int, ...] = MINI_SD_CHANNELS, cross_attention_dim: int = 128
) -> UNet2DConditionModel:
    """`mini-sd`'s UNet: Stable Diffusion 1.5's topology exactly (3 cross-attention down blocks + a plain one, the
    cross-attention mid block, a plain up block + 3 cross-attention ones, 2 layers per block, 4 latent channels,
    8 heads) on a 16x16 latent, at `block_out_channels` instead of SD's (320, 640, 1280, 1280)."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=block_out_channels,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def mini_sd_text_encoder(
    vocab_size: int, bos_token_id: int, eos_token_id: int, hidden_size: int = 128, max_position_embeddings: int = 32
):
    """`mini-sd`'s text encoder: a 4-layer `CLIPTextModel` (SD 1.x: 12 layers, 768 wide, 77 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=4 * hidden_size,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=max_position_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=eos_token_id,
        )
    )
