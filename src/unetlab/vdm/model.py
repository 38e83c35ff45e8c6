"""Continuous-time VDM: the score net, a schedule γ(t) and the three-term bound (Kingma et al. 2021, Eq. 11 and 17)."""

from __future__ import annotations

import torch
from torch import nn

from .schedules import alpha2_sigma2, gamma_and_derivative
from .terms import antithetic_t, diffusion_loss_eps, diffusion_loss_v, prior_kl, randn, reconstruction_nll

PARAMETERIZATIONS = ("eps", "v")


class VDM(nn.Module):
    """VDM with ε- or v-parameterised score net; `terms(x, generator)` gives the bound's three terms in nats.

    Subclasses change the forward mean through `encode` (DiffEnc); ``counter_term`` selects the sampler mean.
    """

    counter_term = False

    def __init__(self, score_net: nn.Module, schedule: nn.Module, parameterization: str = "eps"):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        self.score_net = score_net
        self.schedule = schedule
        self.parameterization = parameterization

    def encode(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x_t with q(z_t|x) = N(α_t x_t, σ_t²); plain VDM uses x_t = x."""
        return x

    def predict_x(self, z_t: torch.Tensor, gamma_t: torch.Tensor) -> torch.Tensor:
        """x̂ from the net: (z − σ ε̂)/α for ε, α z − σ v̂ for v (z = α x + σ ε, v = α ε − σ x)."""
        alpha2, sigma2 = (a.view(-1, 1, 1, 1) for a in alpha2_sigma2(gamma_t))
        out = self.score_net(z_t, gamma_t)
        if self.parameterization == "eps":
            return (z_t - sigma2.sqrt() * out) / alpha2.sqrt()
        return alpha2.sqrt() * z_t - sigma2.sqrt() * out

    def reconstruction(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """−log p(x|z₀) with z₀ = α₀ x₀ + σ₀ ε per example, in nats."""
        gamma_0 = self.schedule(torch.zeros(1, dtype=x.dtype, device=x.device))
        alpha2_0, sigma2_0 = alpha2_sigma2(gamma_0)
        eps_0 = randn(x.shape, generator, x)
        z_0 = alpha2_0.sqrt() * self.encode(x, gamma_0) + sigma2_0.sqrt() * eps_0
        return reconstruction_nll(x, z_0, gamma_0)

    def prior(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z₁|x) ‖ N(0, I)) per example, in nats."""
        gamma_1 = self.schedule(torch.ones(1, dtype=x.dtype, device=x.device))
        return prior_kl(self.encode(x, gamma_1), gamma_1)

    def diffusion(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Continuous-time diffusion loss per example at times t with noise ε, in nats."""
        gamma_t, gamma_prime = gamma_and_derivative(self.schedule, t)
        alpha2, sigma2 = (a.view(-1, 1, 1, 1) for a in alpha2_sigma2(gamma_t))
        z_t = alpha2.sqrt() * x + sigma2.sqrt() * eps
        out = self.score_net(z_t, gamma_t)
        if self.parameterization == "eps":
            return diffusion_loss_eps(gamma_prime, eps, out)
        v = alpha2.sqrt() * eps - sigma2.sqrt() * x
        return diffusion_loss_v(gamma_prime, alpha2.view(-1), v, out)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Same as `terms`; the entry point for wrapped (DDP) modules."""
        return self.terms(x, generator)

    def terms(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The bound's terms per example in nats: reconstruction, prior, diffusion (antithetic t)."""
        t = antithetic_t(x.shape[0], generator, device=x.device, dtype=x.dtype)
        eps = randn(x.shape, generator, x)
        return {
            "reconstruction": self.reconstruction(x, generator),
            "prior": self.prior(x),
            "diffusion": self.diffusion(x, t, eps),
        }
