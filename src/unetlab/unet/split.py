"""The split forward: `encode` (stem, down blocks, mid block) and `decode` (up blocks, head) for k timesteps.

`decode(unet, encode(unet, x, t, **cond), [t])` performs the same operations, in the same order, as
`unet(x, t, **cond)`; with k timesteps the decoder runs once on the state tiled k times, each copy with
the time embedding of its own timestep (Faster Diffusion, Li et al. 2023, Sec. 3.3 "parallel decoding").
Both families take ControlNet-style residuals (`down_block_additional_residuals`, one per skip, and
`mid_block_additional_residual`); `UNet2DModel`'s own `forward` has no such inputs, and the split adds them
where `UNet2DConditionModel` does (to the skips and to the mid block's output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import UNet2DConditionModel

from .split_video import decode_video, encode_video
from .state import EncoderState, check_skip_count, mask_bias, tile
from .support import VIDEO_CLASSES, UnsupportedUNetError, check_call_kwargs, check_supported


def _is_conditional(unet) -> bool:
    return isinstance(unet, UNet2DConditionModel)


def _timestep_vector(unet, timestep, batch_size: int, device, float_dtype) -> torch.Tensor:
    """The per-sample timestep vector exactly as the model's `forward` builds it."""
    if not torch.is_tensor(timestep):
        if _is_conditional(unet):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            if device.type == "mps" and dtype == torch.float64:
                dtype = torch.float32
            if device.type == "mps" and dtype == torch.int64:
                dtype = torch.int32
        else:
            dtype = torch.long
        timestep = torch.tensor([timestep], dtype=dtype, device=device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(device)
    if timestep.numel() not in (1, batch_size):
        raise ValueError(f"timestep: expected a scalar or {batch_size} values, got shape {tuple(timestep.shape)}")
    if _is_conditional(unet):
        return timestep.expand(batch_size)
    return timestep * torch.ones(batch_size, dtype=timestep.dtype, device=timestep.device)


def _embedding(unet, t: torch.Tensor, dtype, class_emb, aug_emb, timestep_cond) -> torch.Tensor:
    """Time embedding plus class and additional embeddings, in the order of the model's `forward`."""
    t_emb = unet.time_proj(t)
    if _is_conditional(unet):
        emb = unet.time_embedding(t_emb.to(dtype=dtype), timestep_cond)
        if class_emb is not None:
            emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat else emb + class_emb
        emb = emb + aug_emb if aug_emb is not None else emb
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        return emb
    emb = unet.time_embedding(t_emb.to(dtype=unet.dtype))
    return emb + class_emb if class_emb is not None else emb


def _embedding_key(timestep, batch: int, dtype, class_emb, aug_emb, timestep_cond) -> tuple:
    """What the time embedding is made from: the same objects (compared by identity, never by value: no device sync)
    at the same batch size and dtype make the same embedding."""
    return (batch, dtype), (timestep, class_emb, aug_emb, timestep_cond)


def _same_key(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and all(x is y for x, y in zip(a[1], b[1]))


def encode(unet, sample: torch.Tensor, timestep, **cond) -> EncoderState:
    """Run the stem, down blocks and mid block as `unet.forward` does and return the decoder's inputs."""
    check_supported(unet)
    if isinstance(unet, VIDEO_CLASSES):
        return encode_video(unet, sample, timestep, **cond)
    if _is_conditional(unet):
        return _encode_conditional(unet, sample, timestep, **cond)
    unknown = sorted(set(cond) - set(_UNCONDITIONAL_KWARGS))
    if unknown:
        raise UnsupportedUNetError(
            f"encode: UNet2DModel takes only {', '.join(_UNCONDITIONAL_KWARGS)}, got {', '.join(unknown)}"
        )
    return _encode_unconditional(unet, sample, timestep, **cond)


_UNCONDITIONAL_KWARGS = ("class_labels", "down_block_additional_residuals", "mid_block_additional_residual")


def _add_residuals(skips, mid, down_residuals, mid_residual):
    """Skips and bottleneck plus ControlNet-style residuals (added after the mid block, as diffusers does)."""
    if (down_residuals is None) != (mid_residual is None):
        raise UnsupportedUNetError(
            "down_block_additional_residuals and mid_block_additional_residual: give both or neither"
        )
    if down_residuals is None:
        return skips, mid
    if len(down_residuals) != len(skips):
        raise ValueError(
            f"down_block_additional_residuals: expected {len(skips)} tensors (one per skip), got {len(down_residuals)}"
        )
    return tuple(s + r for s, r in zip(skips, down_residuals)), mid + mid_residual


def _encode_unconditional(
    unet, sample, timestep, class_labels=None, down_block_additional_residuals=None, mid_block_additional_residual=None
) -> EncoderState:
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    t = _timestep_vector(unet, timestep, sample.shape[0], sample.device, sample.dtype)
    class_emb = None
    if unet.class_embedding is not None:
        if class_labels is None:
            raise ValueError("class_labels: required because the UNet has a class embedding")
        if unet.config.class_embed_type == "timestep":
            class_labels = unet.time_proj(class_labels)
        class_emb = unet.class_embedding(class_labels).to(dtype=unet.dtype)
    elif class_labels is not None:
        raise ValueError("class_labels: given, but the UNet has no class embedding")
    emb = _embedding(unet, t, sample.dtype, class_emb, None, None)
    time_emb = (_embedding_key(timestep, sample.shape[0], sample.dtype, class_emb, None, None), t, emb)
    skip_sample = sample
    sample = unet.conv_in(sample)
    skips = (sample,)
    for block in unet.down_blocks:
        if hasattr(block, "skip_conv"):
            sample, res, skip_sample = block(hidden_states=sample, temb=emb, skip_sample=skip_sample)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        skips += res
    if unet.mid_block is not None:
        sample = unet.mid_block(sample, emb)
    skips, sample = _add_residuals(skips, sample, down_block_additional_residuals, mid_block_additional_residual)
    return EncoderState(
        skips=skips, mid=sample, batch_size=sample.shape[0], class_emb=class_emb, timesteps=t, time_emb=time_emb
    )


def _encode_conditional(unet, sample, timestep, encoder_hidden_states=None, **cond) -> EncoderState:
    check_call_kwargs({"encoder_hidden_states": encoder_hidden_states, **cond})
    if encoder_hidden_states is None and unet.config.encoder_hid_dim_type != "image_proj":
        raise ValueError(
            "encoder_hidden_states: required for UNet2DConditionModel (unless encoder_hid_dim_type="
            "'image_proj' builds it from added_cond_kwargs['image_embeds'], as in Kandinsky 2.2)"
        )
    added_cond_kwargs = cond.get("added_cond_kwargs") or {}
    cross_attention_kwargs = dict(cond.get("cross_attention_kwargs") or {})
    cross_attention_kwargs.pop("scale", None)
    forward_upsample_size = any(d % 2**unet.num_upsamplers != 0 for d in sample.shape[-2:])
    attention_mask = mask_bias(cond.get("attention_mask"), sample.dtype)
    encoder_attention_mask = mask_bias(cond.get("encoder_attention_mask"), sample.dtype)
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0

    t = _timestep_vector(unet, timestep, sample.shape[0], sample.device, sample.dtype)
    class_emb = unet.get_class_embed(sample=sample, class_labels=cond.get("class_labels"))
    probe = torch.empty(0, dtype=sample.dtype, device=sample.device)
    aug_emb = unet.get_aug_embed(
        emb=probe, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
    )
    timestep_cond = cond.get("timestep_cond")
    emb = _embedding(unet, t, sample.dtype, class_emb, aug_emb, timestep_cond)
    time_emb = (_embedding_key(timestep, sample.shape[0], sample.dtype, class_emb, aug_emb, timestep_cond), t, emb)
    encoder_hidden_states = unet.process_encoder_hidden_states(
        encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
    )
    attn = dict(
        encoder_hidden_states=encoder_hidden_states,
        attention_mask=attention_mask,
        cross_attention_kwargs=cross_attention_kwargs or None,
        encoder_attention_mask=encoder_attention_mask,
    )

    intrablock = list(cond.get("down_intrablock_additional_residuals") or ())  # T2I-Adapter, consumed in order
    sample = unet.conv_in(sample)
    skips = (sample,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            extra = {"additional_residuals": intrablock.pop(0)} if intrablock else {}
            sample, res = block(hidden_states=sample, temb=emb, **attn, **extra)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
            if intrablock:
                sample += intrablock.pop(0)
        skips += res

    down_residuals = cond.get("down_block_additional_residuals")
    if down_residuals is not None:
        skips = tuple(s + r for s, r in zip(skips, down_residuals))
    if unet.mid_block is not None:
        if getattr(unet.mid_block, "has_cross_attention", False):
            sample = unet.mid_block(sample, emb, **attn)
        else:
            sample = unet.mid_block(sample, emb)
        if intrablock and sample.shape == intrablock[0].shape:
            sample += intrablock.pop(0)
    if down_residuals is not None:
        sample = sample + cond["mid_block_additional_residual"]
    return EncoderState(
        skips=skips,
        mid=sample,
        batch_size=sample.shape[0],
        class_emb=class_emb,
        aug_emb=aug_emb,
        timestep_cond=timestep_cond,
        forward_upsample_size=forward_upsample_size,
        timesteps=t,
        time_emb=time_emb,
        **attn,
    )


def decode(unet, state: EncoderState, timesteps: Sequence) -> torch.Tensor:
    """Run up blocks and head on `state` for each of k timesteps at once; returns (k*B, C, H, W) in list order."""
    check_supported(unet)
    if not isinstance(timesteps, (list, tuple)):
        raise TypeError("timesteps: expected a list of k timesteps (ints, floats or tensors), e.g. [t]")
    if len(timesteps) == 0:
        raise ValueError("timesteps: expected at least one timestep, got an empty list")
    if isinstance(unet, VIDEO_CLASSES):
        return decode_video(unet, state, timesteps)
    check_skip_count(unet, state)
    k, batch = len(timesteps), state.batch_size
    mid = state.mid
    dtype = mid.dtype
    reuse = state.time_emb  # eagerly only: a traced decode keeps one graph for key and other steps
    if (
        k == 1
        and reuse is not None
        and not torch.compiler.is_compiling()
        and _same_key(
            reuse[0],
            _embedding_key(timesteps[0], batch, dtype, state.class_emb, state.aug_emb, state.timestep_cond),
        )
    ):
        t, emb = reuse[1:]  # the encoder's own step: its embedding, as the model's forward reuses it
    else:
        t = torch.cat([_timestep_vector(unet, ts, batch, mid.device, dtype) for ts in timesteps])
        emb = _embedding(unet, t, dtype, tile(state.class_emb, k), tile(state.aug_emb, k), tile(state.timestep_cond, k))
    skips = tuple(tile(s, k) for s in state.skips)
    sample = tile(mid, k)

    if _is_conditional(unet):
        attn = dict(
            encoder_hidden_states=tile(state.encoder_hidden_states, k),
            attention_mask=tile(state.attention_mask, k),
            encoder_attention_mask=tile(state.encoder_attention_mask, k),
            cross_attention_kwargs=state.cross_attention_kwargs,
        )
        for i, block in enumerate(unet.up_blocks):
            n = len(block.resnets)
            res, skips = skips[-n:], skips[:-n]
            upsample_size = None
            if i < len(unet.up_blocks) - 1 and state.forward_upsample_size:
                upsample_size = skips[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                sample = block(
                    hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, **attn
                )
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)
        if unet.conv_norm_out:
            sample = unet.conv_act(unet.conv_norm_out(sample))
        sample = unet.conv_out(sample)
    else:
        skip_sample = None
        for block in unet.up_blocks:
            n = len(block.resnets)
            res, skips = skips[-n:], skips[:-n]
            if hasattr(block, "skip_conv"):
                sample, skip_sample = block(sample, res, emb, skip_sample)
            else:
                sample = block(sample, res, emb)
        sample = unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))
        if skip_sample is not None:
            sample += skip_sample
        if unet.config.time_embedding_type == "fourier":
            sample = sample / t.reshape((sample.shape[0], *([1] * len(sample.shape[1:]))))
    return sample
