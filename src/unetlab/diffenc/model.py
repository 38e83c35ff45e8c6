"""DiffEnc: VDM with a time-dependent encoder in the forward mean, v-parameterised (Nielsen et al. 2024; REFERENCE.md
§5)."""

from __future__ import annotations

import torch
from torch import nn

from ..vdm.model import VDM
from ..vdm.schedules import alpha2_sigma2, gamma_and_derivative
from .encoder import NonTrainableEncoder, TrainableEncoder


class DiffEnc(VDM):
    """q(z_t|x) = N(α_t x_φ(x, γ_t), σ_t²); the net predicts v; the sampler mean carries the counter term."""

    counter_term = True

    def __init__(self, score_net: nn.Module, schedule: nn.Module, encoder: TrainableEncoder | NonTrainableEncoder):
        super().__init__(score_net, schedule, parameterization="v")
        if not isinstance(encoder, (TrainableEncoder, NonTrainableEncoder)):
            raise TypeError(f"encoder must be a TrainableEncoder or NonTrainableEncoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def encode(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, gamma)

    def diffusion(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """½ γ' α_t² ‖v_t − v̂ + σ_t (x̂ − x_t + y_φ + ∂y_φ/∂γ)‖² per example (y ≡ 0 for DiffEnc-nt), in nats."""
        gamma_t, gamma_prime = gamma_and_derivative(self.schedule, t)
        x_t, y, dy_dgamma = self.encoder.with_y(x, gamma_t)
        alpha2, sigma2 = (a.view(-1, 1, 1, 1) for a in alpha2_sigma2(gamma_t))
        alpha_t, sigma_t = alpha2.sqrt(), sigma2.sqrt()
        z_t = alpha_t * x_t + sigma_t * eps
        v_t = alpha_t * eps - sigma_t * x_t
        v_hat = self.score_net(z_t, gamma_t)
        x_hat = alpha_t * z_t - sigma_t * v_hat
        residual = v_t - v_hat + sigma_t * (x_hat - x_t + y + dy_dgamma)
        return 0.5 * gamma_prime * alpha2.view(-1) * torch.square(residual).flatten(1).sum(1)
