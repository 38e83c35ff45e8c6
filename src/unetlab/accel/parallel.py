"""Decoding several steps as one batch (encoder propagation's parallel mode) so that it equals decoding them one
by one, up to floating-point noise, for every attention processor of the decoder.

Most processors treat the elements of a batch independently and the copies of the state (one per step; they
differ in their skips and bottleneck only when these are forecast) are laid out copy after copy. PAG's
processors split the batch into equal groups (`chunk(2)`: conditional | perturbed; `chunk(3)`: unconditional |
conditional | perturbed): for them the copies are laid out group-major, so that each chunk holds the same group
of every copy, and the output is put back copy-major. Any other processor makes `plan` return None with the
reason (the caller decodes sequentially and says so once).
"""

from __future__ import annotations

import dataclasses

import torch

# diffusers processors that compute every batch element on its own (the batch is only a leading dimension).
BATCH_INDEPENDENT = frozenset(
    {
        "AttnProcessor",
        "AttnProcessor2_0",
        "XFormersAttnProcessor",
        "SlicedAttnProcessor",
        "FusedAttnProcessor2_0",
        "AttnAddedKVProcessor",
        "AttnAddedKVProcessor2_0",
        "SlicedAttnAddedKVProcessor",
        "XFormersAttnAddedKVProcessor",
        "AttnProcessorNPU",
        "CrossAttnStoreProcessor",
        "IPAdapterAttnProcessor",
        "IPAdapterAttnProcessor2_0",
    }
)
# processors that split the batch into this many equal groups
GROUPED = {"PAGIdentitySelfAttnProcessor2_0": 2, "PAGCFGIdentitySelfAttnProcessor2_0": 3}
_BATCH_FIELDS = (
    "skips",
    "mid",
    "class_emb",
    "aug_emb",
    "timestep_cond",
    "encoder_hidden_states",
    "attention_mask",
    "encoder_attention_mask",
)


def plan(attention) -> tuple[int, str | None]:
    """(groups, None) for the decoder's `attention` modules (`side_state.holders`; 1: plain copies), or
    (0, '<Processor> (in <module>)') for the first processor that neither treats batch elements independently nor
    splits them into known groups."""
    groups = {1}
    for m in attention:
        name = type(m.processor).__name__
        if name in GROUPED:
            groups.add(GROUPED[name])
        elif name not in BATCH_INDEPENDENT:
            return 0, f"{name} (in {type(m).__name__})"
    if len(groups) > 2:
        return 0, f"processors splitting the batch into {sorted(groups - {1})} groups at once"
    return max(groups), None


def _group_major(xs: list, groups: int):
    """The copies xs (batch first) in one batch, group-major: [g0 of copy 0..k-1, g1 of copy 0..k-1, ...]."""
    x = xs[0]
    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return type(x)(_group_major(list(parts), groups) for parts in zip(*xs))
    parts = [c.reshape(groups, c.shape[0] // groups, *c.shape[1:]) for c in xs]
    return torch.cat(parts, dim=1).reshape(len(xs) * x.shape[0], *x.shape[1:])


def grouped_state(states: list, timesteps: list, groups: int):
    """(the k states, one per timestep, as one state of k*B rows laid out group-major; per-row timesteps) for
    decoding k timesteps in one batch."""
    k, b, state = len(timesteps), states[0].batch_size, states[0]
    tiled = dataclasses.replace(
        state, batch_size=k * b, **{f: _group_major([getattr(s, f) for s in states], groups) for f in _BATCH_FIELDS}
    )
    device = state.mid.device
    per_copy = torch.stack([torch.as_tensor(t, device=device).reshape(()) for t in timesteps])
    rows = per_copy[None, :, None].expand(groups, k, b // groups).reshape(-1)
    return tiled, rows


def copy_major(out: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Decoder output laid out group-major back to copy after copy."""
    rows = out.shape[0] // (k * groups)
    return out.reshape(groups, k, rows, *out.shape[1:]).transpose(0, 1).reshape(out.shape)
