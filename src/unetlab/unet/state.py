"""The encoder state both split forwards (`split`, `split_video`) hand to their decoders, and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EncoderState:
    """Everything the decoder needs: skip tensors, bottleneck output, and the step-independent conditioning."""

    skips: tuple[torch.Tensor, ...]
    mid: torch.Tensor
    batch_size: int
    class_emb: torch.Tensor | None = None
    aug_emb: torch.Tensor | None = None
    timestep_cond: torch.Tensor | None = None
    encoder_hidden_states: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None
    cross_attention_kwargs: dict[str, Any] | None = None
    forward_upsample_size: bool = False
    timesteps: torch.Tensor | None = field(default=None, repr=False)
    # (what `encode` made the time embedding from, the timestep vector, the embedding): `decode` of that timestep on
    # that same conditioning reuses them, as the model's forward computes them once (`split._embedding_key`)
    time_emb: tuple | None = field(default=None, repr=False)

    def detach(self) -> EncoderState:
        """A copy whose tensors are detached from the autograd graph."""
        d = lambda x: x.detach() if torch.is_tensor(x) else x  # noqa: E731
        return EncoderState(
            skips=tuple(d(s) for s in self.skips),
            mid=d(self.mid),
            batch_size=self.batch_size,
            class_emb=d(self.class_emb),
            aug_emb=d(self.aug_emb),
            timestep_cond=d(self.timestep_cond),
            encoder_hidden_states=d(self.encoder_hidden_states),
            attention_mask=d(self.attention_mask),
            encoder_attention_mask=d(self.encoder_attention_mask),
            cross_attention_kwargs=self.cross_attention_kwargs,
            forward_upsample_size=self.forward_upsample_size,
            timesteps=d(self.timesteps),
        )


def mask_bias(mask: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """An attention mask (1 keep, 0 drop) as the additive bias the attention layers take, as `forward` builds it."""
    if mask is None:
        return None
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def tile(x, k: int):
    """Repeat a batch-first tensor (or each of a nested tuple: IP-Adapter's (text, [image]) states) k times
    along the batch (block order: copy 0 first)."""
    if x is None or k == 1:
        return x
    if isinstance(x, (tuple, list)):
        return type(x)(tile(v, k) for v in x)
    return torch.cat([x] * k, dim=0)


def check_skip_count(unet, state: EncoderState) -> None:
    """The up blocks consume the last skips, one per resnet (forward leaves any extra: K-diffusion blocks)."""
    needed = sum(len(b.resnets) for b in unet.up_blocks)
    if len(state.skips) < needed:
        raise RuntimeError(
            f"decode: the state has {len(state.skips)} skip tensor(s), this UNet's up blocks consume "
            f"{needed}; the state does not fit this UNet"
        )
