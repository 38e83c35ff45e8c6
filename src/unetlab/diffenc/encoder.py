"""DiffEnc's time-dependent encoders x_φ(x, γ) (Nielsen et al. 2024, DiffEnc; REFERENCE.md §5)."""

from __future__ import annotations

import torch
from torch import nn

from ..vdm.schedules import alpha2_sigma2
from ..vdm.score_net import NoDownsampleUNet
from .tangent import tanh_net_and_gamma_derivative


def _bcast(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(-1, 1, 1, 1)


class NonTrainableEncoder(nn.Module):
    """DiffEnc-nt: x_nt(x, γ) = α²(γ) x."""

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        alpha2, _ = alpha2_sigma2(gamma)
        return _bcast(alpha2) * x

    def with_y(self, x: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, y, ∂y/∂γ) with y ≡ 0."""
        zero = torch.zeros_like(x)
        return self(x, gamma), zero, zero


class TrainableEncoder(nn.Module):
    """DiffEnc: x_φ(x, γ) = α²(γ) x + σ²(γ) y_φ(x, γ), y_φ a small UNet ending in a zero-initialised conv and tanh."""

    def __init__(self, y_net: NoDownsampleUNet):
        super().__init__()
        cfg = getattr(y_net, "config", None)
        if not getattr(cfg, "output_tanh", False) or cfg.add_input or cfg.attention or cfg.dropout:
            raise ValueError(
                "y_net must be a NoDownsampleUNet with output_tanh=True, add_input=False, attention=False, dropout=0"
            )
        self.y_net = y_net

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        alpha2, sigma2 = alpha2_sigma2(gamma.reshape(-1).expand(x.shape[0]))
        return _bcast(alpha2) * x + _bcast(sigma2) * self.y_net(x, gamma)

    def with_y(self, x: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, y_φ, ∂y_φ/∂γ): the derivative by forward-mode differentiation written out, exact and differentiable."""
        gamma = gamma.reshape(-1).expand(x.shape[0])
        y, dy_dgamma = tanh_net_and_gamma_derivative(self.y_net, x, gamma)
        alpha2, sigma2 = alpha2_sigma2(gamma)
        return _bcast(alpha2) * x + _bcast(sigma2) * y, y, dy_dgamma
