"""Cross-frame attention written out by hand, independent of unetlab: the reference for anchor attention."""

import torch
from diffusers.models.attention_processor import Attention


class ReferenceCrossFrame:
    """softmax(q k^T / sqrt(d)) v written out, with each frame's keys/values = the anchors' (+ its own)."""

    def __init__(self, copies: int, frames: int, anchors: list[int], own: bool):
        self.copies, self.frames, self.anchors, self.own = copies, frames, anchors, own

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        b, n, _ = hidden_states.shape
        heads = attn.heads

        def split(x):
            return x.view(b, n, heads, -1).permute(0, 2, 1, 3)  # (b, heads, n, d)

        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(hidden_states)), split(attn.to_v(hidden_states))
        rows = []
        for r in range(b):
            c, f = divmod(r, self.frames)
            src = [c * self.frames + a for a in self.anchors]
            if self.own and f not in self.anchors:
                src.append(r)
            keys, values = torch.cat([k[s] for s in src], dim=1), torch.cat([v[s] for s in src], dim=1)
            w = torch.softmax(q[r] @ keys.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
            rows.append(w @ values)
        out = torch.stack(rows).permute(0, 2, 1, 3).reshape(b, n, -1)
        return attn.to_out[1](attn.to_out[0](out))


def self_attention(unet):
    return {n: m for n, m in unet.named_modules() if isinstance(m, Attention) and not m.is_cross_attention}
