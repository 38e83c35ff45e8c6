"""The three terms of the VDM variational bound in nats (Kingma et al. 2021, Eq. 11 and 17)."""

from __future__ import annotations

import math

import torch

from .schedules import alpha2_sigma2

VOCAB_SIZE = 256


def bins_to_x(k: torch.Tensor, vocab_size: int = VOCAB_SIZE) -> torch.Tensor:
    """Data in [−1, 1] from integer bins: x = 2(k + ½)/256 − 1 (VDM code `encdec`)."""
    return 2.0 * (k.to(torch.get_default_dtype()) + 0.5) / vocab_size - 1.0


def x_to_bins(x: torch.Tensor, vocab_size: int = VOCAB_SIZE) -> torch.Tensor:
    """Inverse of `bins_to_x`: the integer bin of each value, clamped to [0, 255]."""
    return torch.clamp(torch.round((x + 1.0) * vocab_size / 2.0 - 0.5), 0, vocab_size - 1).long()


def images_to_x(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → 8-bit bins k = round(255·image) → x = 2(k + ½)/256 − 1."""
    return bins_to_x(torch.round(images.clamp(0, 1) * 255).long()).to(images.dtype).to(images.device)


def randn(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, returned on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def antithetic_t(batch_size: int, generator: torch.Generator, device=None, dtype=None) -> torch.Tensor:
    """Low-variance times t_i = (u + i/B) mod 1 with one uniform u (VDM code `t0 + arange/B`)."""
    u = torch.rand((), generator=generator, device=generator.device, dtype=dtype).to(device)
    return torch.remainder(u + torch.arange(batch_size, device=device, dtype=dtype) / batch_size, 1.0)


def reconstruction_nll(
    x: torch.Tensor, z_0: torch.Tensor, gamma_0: torch.Tensor, vocab_size: int = VOCAB_SIZE
) -> torch.Tensor:
    """−log p(x|z₀) summed per example: 256-way categorical with logits −½((z₀/α₀ − x_k)/(σ₀/α₀))² (VDM code
    `decode`)."""
    alpha2_0, _ = alpha2_sigma2(gamma_0)
    z_0_rescaled = z_0 / alpha2_0.sqrt()
    x_vals = bins_to_x(torch.arange(vocab_size, device=x.device), vocab_size).to(z_0.dtype)
    inv_stdev = torch.exp(-0.5 * gamma_0)
    logits = -0.5 * torch.square((z_0_rescaled.unsqueeze(-1) - x_vals) * inv_stdev)
    log_probs = torch.log_softmax(logits, dim=-1)
    k = x_to_bins(x, vocab_size).unsqueeze(-1)
    return -torch.gather(log_probs, -1, k).squeeze(-1).flatten(1).sum(1)


def prior_kl(mean_1: torch.Tensor, gamma_1: torch.Tensor) -> torch.Tensor:
    """KL(N(α₁ m, σ₁²) ‖ N(0, 1)) summed per example, for the encoded data m at t = 1 (VDM Eq. 11)."""
    alpha2_1, sigma2_1 = alpha2_sigma2(gamma_1)
    kl = 0.5 * (sigma2_1 + alpha2_1 * torch.square(mean_1) - torch.log(sigma2_1) - 1.0)
    return kl.flatten(1).sum(1)


def diffusion_loss_eps(gamma_prime: torch.Tensor, eps: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
    """Continuous-time diffusion loss ½ γ'(t) ‖ε − ε̂‖² per example (VDM Eq. 17)."""
    return 0.5 * gamma_prime * torch.square(eps - eps_hat).flatten(1).sum(1)


def diffusion_loss_v(
    gamma_prime: torch.Tensor, alpha2_t: torch.Tensor, v: torch.Tensor, v_hat: torch.Tensor
) -> torch.Tensor:
    """VDM loss in v-parameterisation ½ γ'(t) α_t² ‖v − v̂‖² per example (Nielsen et al. 2024, DiffEnc, VDMv loss)."""
    return 0.5 * gamma_prime * alpha2_t * torch.square(v - v_hat).flatten(1).sum(1)


def nats_to_bpd(nats: torch.Tensor, dims: int) -> torch.Tensor:
    """Bits per dimension from a per-example bound in nats: L / (D ln 2)."""
    return nats / (dims * math.log(2.0))
