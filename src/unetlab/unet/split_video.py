"""The split forward of the video UNets: `UNet3DConditionModel` (text-to-video) and `UNetMotionModel` (AnimateDiff).

Both fold the frames into the batch, `(B, C, F, H, W) -> (B*F, C, H, W)`, run 2D blocks that take `num_frames`
(temporal layers unfold them again), and fold back at the end. `encode_video` runs stem (plus the 3D model's
`transformer_in`), down blocks and mid block exactly as `forward` does; `decode_video` runs up blocks and head
for k timesteps at once on the state tiled k times (copy-major, so every copy is B whole videos of F frames).
`UNetMotionModel`'s `added_cond_kwargs` are built as its forward builds them: SDXL's `text_time` embedding (AnimateDiff
SDXL) and IP-Adapter's image embeddings (`encoder_hid_dim_type="ip_image_proj"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import UNet3DConditionModel

from .state import EncoderState, check_skip_count, mask_bias, tile
from .support import UnsupportedUNetError

_ALLOWED = {
    "encoder_hidden_states",
    "timestep_cond",
    "attention_mask",
    "cross_attention_kwargs",
    "down_block_additional_residuals",
    "mid_block_additional_residual",
    "added_cond_kwargs",
}


@dataclass
class VideoEncoderState(EncoderState):
    """`batch_size` counts videos; `num_frames` frames each (the tensors hold batch_size * num_frames rows)."""

    num_frames: int = 1


def _timesteps(timestep, batch: int, device) -> torch.Tensor:
    if not torch.is_tensor(timestep):
        dtype = torch.float64 if isinstance(timestep, float) else torch.int64
        timestep = torch.tensor([timestep], dtype=dtype, device=device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(device)
    return timestep.expand(batch)


def _time_embedding(unet, t: torch.Tensor, timestep_cond) -> torch.Tensor:
    return unet.time_embedding(unet.time_proj(t).to(dtype=unet.dtype), timestep_cond)


def _per_frame(emb: torch.Tensor, aug_emb, num_frames: int) -> torch.Tensor:
    emb = emb if aug_emb is None else emb + aug_emb
    return emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)


def _added(unet, added: dict, emb_dtype, ehs, num_frames: int):
    """(aug_emb, encoder_hidden_states) from `added_cond_kwargs` as `UNetMotionModel.forward` builds them: SDXL's
    text_time embedding, and IP-Adapter's projected image embeddings (repeated per frame) next to the text."""

    def need(key, why):
        if key not in added:
            raise ValueError(f"added_cond_kwargs: {why} requires {key!r}")
        return added[key]

    aug_emb = None
    if unet.config.addition_embed_type == "text_time":
        text_embeds = need("text_embeds", "addition_embed_type='text_time'")
        time_embeds = unet.add_time_proj(need("time_ids", "addition_embed_type='text_time'").flatten())
        time_embeds = time_embeds.reshape((text_embeds.shape[0], -1))
        aug_emb = unet.add_embedding(torch.concat([text_embeds, time_embeds], dim=-1).to(emb_dtype))
    if unet.encoder_hid_proj is not None and unet.config.encoder_hid_dim_type == "ip_image_proj":
        image = unet.encoder_hid_proj(need("image_embeds", "encoder_hid_dim_type='ip_image_proj'"))
        ehs = (ehs, [e.repeat_interleave(num_frames, dim=0, output_size=e.shape[0] * num_frames) for e in image])
    return aug_emb, ehs


def _check(unet, cond: dict) -> None:
    unknown = sorted(set(cond) - _ALLOWED)
    if unknown:
        raise UnsupportedUNetError(
            f"encode: argument(s) {', '.join(unknown)} not supported for "
            f"{type(unet).__name__}; supported: {', '.join(sorted(_ALLOWED))}"
        )
    if cond.get("added_cond_kwargs") and isinstance(unet, UNet3DConditionModel):
        raise UnsupportedUNetError("encode: added_cond_kwargs is not an argument of UNet3DConditionModel.forward")
    cak = cond.get("cross_attention_kwargs") or {}
    if cak.get("scale", 1.0) != 1.0:
        raise UnsupportedUNetError("encode: cross_attention_kwargs['scale'] (LoRA scale) must be 1.0")


def encode_video(unet, sample: torch.Tensor, timestep, encoder_hidden_states=None, **cond) -> VideoEncoderState:
    """Stem, down blocks and mid block of a video UNet, as its `forward` runs them."""
    _check(unet, cond)
    if encoder_hidden_states is None:
        raise ValueError(f"encoder_hidden_states: required for {type(unet).__name__}")
    is_3d = isinstance(unet, UNet3DConditionModel)
    batch, frames = sample.shape[0], sample.shape[2]
    forward_upsample_size = any(s % 2**unet.num_upsamplers != 0 for s in sample.shape[-2:])
    mask = mask_bias(cond.get("attention_mask"), sample.dtype)
    cak = cond.get("cross_attention_kwargs")
    t = _timesteps(timestep, batch, sample.device)
    timestep_cond = cond.get("timestep_cond")
    emb = _time_embedding(unet, t, timestep_cond)
    ehs, aug_emb = encoder_hidden_states, None
    if is_3d:
        ehs = ehs.repeat_interleave(frames, dim=0, output_size=ehs.shape[0] * frames)
    else:
        aug_emb, ehs = _added(unet, cond.get("added_cond_kwargs") or {}, emb.dtype, ehs, frames)
    emb = _per_frame(emb, aug_emb, frames)
    x = sample.permute(0, 2, 1, 3, 4).reshape((batch * frames, -1) + sample.shape[3:])
    x = unet.conv_in(x)
    if is_3d:
        x = unet.transformer_in(x, num_frames=frames, cross_attention_kwargs=cak, return_dict=False)[0]
    attn = dict(encoder_hidden_states=ehs, attention_mask=mask, num_frames=frames, cross_attention_kwargs=cak)
    skips = (x,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            x, res = block(hidden_states=x, temb=emb, **attn)
        else:
            x, res = block(hidden_states=x, temb=emb, num_frames=frames)
        skips += res
    residuals = cond.get("down_block_additional_residuals")
    if residuals is not None:
        skips = tuple(s + r for s, r in zip(skips, residuals))
    if unet.mid_block is not None:
        if is_3d or hasattr(unet.mid_block, "motion_modules"):
            x = unet.mid_block(x, emb, **attn)
        else:
            x = unet.mid_block(x, emb, encoder_hidden_states=ehs, attention_mask=mask, cross_attention_kwargs=cak)
    if cond.get("mid_block_additional_residual") is not None:
        x = x + cond["mid_block_additional_residual"]
    return VideoEncoderState(
        skips=skips,
        mid=x,
        batch_size=batch,
        timestep_cond=timestep_cond,
        aug_emb=aug_emb,
        encoder_hidden_states=ehs,
        attention_mask=mask,
        cross_attention_kwargs=cak,
        forward_upsample_size=forward_upsample_size,
        timesteps=t,
        num_frames=frames,
    )


def decode_video(unet, state: VideoEncoderState, timesteps: Sequence) -> torch.Tensor:
    """Up blocks and head for each of k timesteps at once; returns (k*B, C, F, H, W) in list order."""
    check_skip_count(unet, state)
    k, frames = len(timesteps), state.num_frames
    t = torch.cat([_timesteps(ts, state.batch_size, state.mid.device) for ts in timesteps])
    emb = _per_frame(_time_embedding(unet, t, tile(state.timestep_cond, k)), tile(state.aug_emb, k), frames)
    skips = tuple(tile(s, k) for s in state.skips)
    x = tile(state.mid, k)
    attn = dict(
        encoder_hidden_states=tile(state.encoder_hidden_states, k),
        attention_mask=tile(state.attention_mask, k),
        num_frames=frames,
        cross_attention_kwargs=state.cross_attention_kwargs,
    )
    for i, block in enumerate(unet.up_blocks):
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        upsample_size = skips[-1].shape[2:] if i < len(unet.up_blocks) - 1 and state.forward_upsample_size else None
        if getattr(block, "has_cross_attention", False):
            x = block(hidden_states=x, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, **attn)
        else:
            x = block(
                hidden_states=x, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, num_frames=frames
            )
    if unet.conv_norm_out:
        x = unet.conv_act(unet.conv_norm_out(x))
    x = unet.conv_out(x)
    return x[None, :].reshape((-1, frames) + x.shape[1:]).permute(0, 2, 1, 3, 4)
