"""Which diffusers UNets the split forward supports, and the one-line errors for the rest."""

from __future__ import annotations

from diffusers import UNet2DConditionModel, UNet2DModel, UNet3DConditionModel, UNetMotionModel

from ..errors import UnsupportedError

VIDEO_CLASSES = (UNet3DConditionModel, UNetMotionModel)  # split in split_video.py
SUPPORTED_CLASSES = (UNet2DModel, UNet2DConditionModel, *VIDEO_CLASSES)
_ADDITION_EMBED_TYPES = (None, "text", "text_time", "text_image", "image")
_ENCODER_HID_DIM_TYPES = (None, "text_proj", "text_image_proj", "image_proj", "ip_image_proj")


class UnsupportedUNetError(UnsupportedError, ValueError):
    """A UNet class, configuration option or call argument the split forward does not handle."""


def check_supported(unet) -> None:
    """Raise `UnsupportedUNetError` naming the class or option when `unet` cannot be split exactly."""
    if not isinstance(unet, SUPPORTED_CLASSES):
        names = ", ".join(c.__name__ for c in SUPPORTED_CLASSES)
        raise UnsupportedUNetError(f"unet: {type(unet).__name__} is not supported; supported classes: {names}")
    cfg = unet.config
    if isinstance(unet, UNetMotionModel) and (
        cfg.addition_embed_type not in (None, "text_time") or cfg.encoder_hid_dim_type not in (None, "ip_image_proj")
    ):
        raise UnsupportedUNetError(
            f"unet: UNetMotionModel with addition_embed_type={cfg.addition_embed_type!r}, encoder_hid_dim_type="
            f"{cfg.encoder_hid_dim_type!r} is not supported; supported: None or 'text_time', None or 'ip_image_proj'"
        )
    if isinstance(unet, UNet2DConditionModel):
        if cfg.addition_embed_type not in _ADDITION_EMBED_TYPES:
            raise UnsupportedUNetError(
                f"unet.config.addition_embed_type={cfg.addition_embed_type!r} is not supported; "
                f"supported: {', '.join(map(repr, _ADDITION_EMBED_TYPES))}"
            )
        if cfg.encoder_hid_dim_type not in _ENCODER_HID_DIM_TYPES:
            raise UnsupportedUNetError(
                f"unet.config.encoder_hid_dim_type={cfg.encoder_hid_dim_type!r} is not supported; "
                f"supported: {', '.join(map(repr, _ENCODER_HID_DIM_TYPES))}"
            )


def check_call_kwargs(cond: dict) -> None:
    """Reject forward arguments whose effect the split forward does not reproduce."""
    allowed = {
        "encoder_hidden_states",
        "class_labels",
        "timestep_cond",
        "attention_mask",
        "cross_attention_kwargs",
        "added_cond_kwargs",
        "down_block_additional_residuals",
        "mid_block_additional_residual",
        "encoder_attention_mask",
        "down_intrablock_additional_residuals",
    }
    unknown = sorted(set(cond) - allowed)
    if unknown:
        raise UnsupportedUNetError(
            f"encode: argument(s) {', '.join(unknown)} not supported; supported: {', '.join(sorted(allowed))}"
        )
    if (cond.get("down_block_additional_residuals") is None) != (cond.get("mid_block_additional_residual") is None):
        raise UnsupportedUNetError(
            "encode: ControlNet residuals need both down_block_additional_residuals and "
            "mid_block_additional_residual (T2I-Adapter residuals go in down_intrablock_additional_residuals)"
        )
    cak = cond.get("cross_attention_kwargs") or {}
    if "gligen" in cak:
        raise UnsupportedUNetError("encode: cross_attention_kwargs['gligen'] (GLIGEN) is not supported")
    if cak.get("scale", 1.0) != 1.0:
        raise UnsupportedUNetError(
            "encode: cross_attention_kwargs['scale'] (LoRA scale) must be 1.0; fuse the LoRA with the wanted scale"
        )
