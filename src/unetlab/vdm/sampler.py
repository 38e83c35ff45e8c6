"""Ancestral sampling z_t → z_s for VDM (Kingma et al. 2021; VDM code `sample_step`) and DiffEnc's counter-term mean
(REFERENCE.md §5)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .schedules import alpha2_sigma2
from .terms import VOCAB_SIZE, bins_to_x, randn


def ancestral_step(
    z_t: torch.Tensor, x_hat: torch.Tensor, gamma_s: torch.Tensor, gamma_t: torch.Tensor, counter_term: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of p(z_s|z_t): μ = (α_s/α_t) e^{γ_s−γ_t} z_t − α_s (e^{γ_s−γ_t} − 1) x̂ [− α_s (γ_s − γ_t) σ_t² x̂].

    σ = σ_s √(−expm1(γ_s − γ_t)); the bracketed counter term is DiffEnc's (``counter_term=True``).
    """
    alpha2_s, sigma2_s = alpha2_sigma2(gamma_s)
    alpha2_t, sigma2_t = alpha2_sigma2(gamma_t)
    delta = gamma_s - gamma_t
    expm1 = torch.expm1(delta)
    alpha_s = alpha2_s.sqrt()
    mu = (alpha_s / alpha2_t.sqrt()) * torch.exp(delta) * z_t - alpha_s * expm1 * x_hat
    if counter_term:
        mu = mu - alpha_s * delta * sigma2_t * x_hat
    return mu, sigma2_s.sqrt() * torch.sqrt(-expm1)


@torch.no_grad()
def ancestral_sample(
    model, shape: tuple[int, ...], steps: int, generator: torch.Generator, device=None, progress: bool = False
) -> torch.Tensor:
    """Draw z₁ ~ N(0, I), take ``steps`` ancestral steps to z₀, return the mode of p(x|z₀) as data in [−1, 1]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dtype = next(model.parameters()).dtype
    like = torch.empty(0, device=device, dtype=dtype)
    z = randn(shape, generator, like)
    for i in tqdm(range(steps, 0, -1), disable=not progress, desc="sampling"):
        t = torch.full((shape[0],), i / steps, device=device, dtype=dtype)
        s = torch.full((shape[0],), (i - 1) / steps, device=device, dtype=dtype)
        gamma_t, gamma_s = model.schedule(t), model.schedule(s)
        x_hat = model.predict_x(z, gamma_t)
        view = (-1,) + (1,) * (len(shape) - 1)
        mu, std = ancestral_step(z, x_hat, gamma_s.view(view), gamma_t.view(view), model.counter_term)
        z = mu + std * randn(shape, generator, like)
    gamma_0 = model.schedule(torch.zeros(1, device=device, dtype=dtype))
    alpha2_0, _ = alpha2_sigma2(gamma_0)
    x_vals = bins_to_x(torch.arange(VOCAB_SIZE, device=device)).to(dtype)
    k = torch.argmin(torch.abs(z.unsqueeze(-1) / alpha2_0.sqrt() - x_vals), dim=-1)
    return bins_to_x(k).to(dtype)
