"""Example inputs of the right shapes for any supported UNet (for FLOP counts, benchmarks and tests)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel


def sample_size_of(unet, sample_size=None) -> tuple[int, int]:
    """(H, W) from an explicit size or the model config's `sample_size`."""
    size = sample_size if sample_size is not None else unet.config.sample_size
    if size is None:
        raise ValueError("sample_size: the UNet config has none; pass sample_size=(H, W) or an int")
    if isinstance(size, int):
        return size, size
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"sample_size: expected an int or (H, W) of positive ints, got {size!r}")
    return tuple(size)


def example_inputs(
    unet, batch_size: int = 1, sample_size=None, seq_len: int = 77, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict]:
    """A random `sample` and the conditioning keyword arguments `unet.forward` needs for its configuration."""
    h, w = sample_size_of(unet, sample_size)
    p = next(unet.parameters())
    rand = lambda *shape: torch.randn(*shape, generator=generator).to(p.device, p.dtype)  # noqa: E731
    sample = rand(batch_size, unet.config.in_channels, h, w)
    cond: dict = {}
    cfg = unet.config
    if isinstance(unet, UNet2DConditionModel):
        dim = cfg.encoder_hid_dim or cfg.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        cond["encoder_hidden_states"] = rand(batch_size, seq_len, dim)
        if cfg.addition_embed_type == "text_time":
            text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            cond["added_cond_kwargs"] = {
                "text_embeds": rand(batch_size, text_dim),
                "time_ids": torch.tensor(
                    [[h * 8, w * 8, 0, 0, h * 8, w * 8]] * batch_size, device=p.device, dtype=p.dtype
                ),
            }
    if getattr(unet, "class_embedding", None) is not None:
        kind = cfg.class_embed_type
        if kind == "timestep":
            cond["class_labels"] = torch.full((batch_size,), 20, device=p.device, dtype=torch.long)
        elif kind in ("projection", "simple_projection"):
            cond["class_labels"] = rand(batch_size, cfg.projection_class_embeddings_input_dim)
        else:
            cond["class_labels"] = torch.zeros(batch_size, device=p.device, dtype=torch.long)
    return sample, cond
