"""y_φ(x, γ) and ∂y_φ/∂γ in one pass: forward-mode differentiation of the encoder's UNet written out by hand.

DiffEnc's loss (Nielsen et al. 2024, eq. 9; REFERENCE.md §5) needs the encoder's time derivative. `torch.func.jvp`
gives it exactly, but on CPU decomposes every group norm into dozens of primitive ops, so that pass and its backward
cost ~2.4× this one. Each function below maps a (value, tangent) pair to the next, with the tangent ``None`` where it
is identically zero (the input x does not depend on γ). The results are plain differentiable tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from ..vdm.score_net import NoDownsampleUNet, embedding_frequencies, sinusoidal_embedding

Dual = tuple[torch.Tensor, "torch.Tensor | None"]


def _silu(a: torch.Tensor, da: torch.Tensor | None) -> Dual:
    """silu(a) = a·s(a); silu'(a) = s(a)·(1 + a·(1 − s(a)))."""
    s = torch.sigmoid(a)
    return a * s, None if da is None else da * (s * (1 + a * (1 - s)))


def _group_norm(norm: nn.GroupNorm, h: torch.Tensor, dh: torch.Tensor | None) -> Dual:
    """ĥ = (h − μ)/σ per group; dĥ = (dh − mean(dh) − ĥ·mean(dh·ĥ))/σ; both then scaled by the affine weight."""
    if dh is None:
        return F.group_norm(h, norm.num_groups, norm.weight, norm.bias, norm.eps), None
    n, c = h.shape[:2]
    grouped = h.reshape(n, norm.num_groups, -1)
    var, mean = torch.var_mean(grouped, -1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + norm.eps)
    h_hat = (grouped - mean) * rstd
    weight = norm.weight.view(1, c, 1, 1)
    d = dh.reshape(n, norm.num_groups, -1)
    d_hat = rstd * (d - d.mean(-1, keepdim=True) - h_hat * (d * h_hat).mean(-1, keepdim=True))
    return h_hat.view_as(h) * weight + norm.bias.view(1, c, 1, 1), d_hat.view_as(h) * weight


def _conv(conv: nn.Conv2d, h: torch.Tensor, dh: torch.Tensor | None) -> Dual:
    tangent = None if dh is None else F.conv2d(dh, conv.weight, None, conv.stride, conv.padding)
    return conv(h), tangent


def _linear(linear: nn.Linear, h: torch.Tensor, dh: torch.Tensor) -> Dual:
    return linear(h), F.linear(dh, linear.weight)


def _concat(h: Dual, skip: Dual) -> Dual:
    (h, dh), (s, ds) = h, skip
    return torch.cat([h, s], 1), torch.cat([dh, torch.zeros_like(s) if ds is None else ds], 1)


def _resnet(block: ResnetBlock2D, x: Dual, cond: Dual) -> Dual:
    """diffusers' ResnetBlock2D as NoDownsampleUNet builds it: default time-embedding norm, no time activation."""
    h, dh = x
    a, da = _conv(block.conv1, *_silu(*_group_norm(block.norm1, h, dh)))
    e, de = _linear(block.time_emb_proj, *cond)
    a, de = a + e[:, :, None, None], de[:, :, None, None]
    a, da = _group_norm(block.norm2, a, de.expand_as(a) if da is None else da + de)
    a, da = _conv(block.conv2, *_silu(a, da))
    if block.conv_shortcut is not None:
        h, dh = _conv(block.conv_shortcut, h, dh)
    return (h + a) / block.output_scale_factor, (da if dh is None else dh + da) / block.output_scale_factor


def tanh_net_and_gamma_derivative(net: NoDownsampleUNet, z: torch.Tensor, gamma: torch.Tensor) -> Dual:
    """(net(z, γ), ∂net(z, γ)/∂γ) for a NoDownsampleUNet with ``output_tanh``, no attention and no dropout."""
    cfg = net.config
    t = net.normalised_time(gamma, z)
    emb = sinusoidal_embedding(t, cfg.channels)
    half = cfg.channels // 2
    # d/dγ of sin, cos(1000·t·f) with dt/dγ = 1/(γ_max − γ_min)
    rate = (1000.0 / (cfg.gamma_max - cfg.gamma_min)) * embedding_frequencies(cfg.channels, t).expand(len(t), half)
    d_emb = torch.cat([emb[:, half:] * rate, -emb[:, :half] * rate], 1)
    a, da = _linear(net.time_mlp[2], *_silu(*_linear(net.time_mlp[0], emb, d_emb)))
    cond = _silu(a, da)
    h, dh = net.trunk((net.conv_in(net.input_features(z)), None), cond, resnet=_resnet, concat=_concat)
    a, da = _conv(net.conv_out, *_silu(*_group_norm(net.norm_out, h, dh)))
    y = torch.tanh(a)
    return y, da * (1 - y * y)
