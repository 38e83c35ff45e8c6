"""Noise schedules γ(t) = −log SNR(t) of Variational Diffusion Models (Kingma et al. 2021; VDM code
`NoiseSchedule_*`)."""

from __future__ import annotations

import torch
from torch import nn

GAMMA_MIN = -13.3
GAMMA_MAX = 5.0


def _check_endpoints(gamma_min: float, gamma_max: float) -> None:
    if not gamma_min < gamma_max:
        raise ValueError(f"gamma_min must be < gamma_max, got gamma_min={gamma_min}, gamma_max={gamma_max}")


def alpha2_sigma2(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VDM's variance-preserving process in γ form: α² = sigmoid(−γ), σ² = sigmoid(γ)."""
    return torch.sigmoid(-gamma), torch.sigmoid(gamma)


def gamma_and_derivative(schedule: nn.Module, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """γ(t) and γ'(t) = dγ/dt by autograd (VDM Eq. 17), differentiable w.r.t. the schedule's parameters."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        gamma = schedule(t)
        (gamma_prime,) = torch.autograd.grad(gamma.sum(), t, create_graph=create_graph)
    if not create_graph:
        gamma, gamma_prime = gamma.detach(), gamma_prime.detach()
    return gamma, gamma_prime


class FixedLinearSchedule(nn.Module):
    """VDM fixed linear schedule γ(t) = γ_min + (γ_max − γ_min) t (Kingma et al. 2021; VDM code
    `NoiseSchedule_FixedLinear`)."""

    def __init__(self, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX):
        super().__init__()
        _check_endpoints(gamma_min, gamma_max)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.gamma_min + (self.gamma_max - self.gamma_min) * t


class LearnedLinearSchedule(nn.Module):
    """VDM linear schedule with learned endpoints, γ(t) = b + |w| t (VDM code `NoiseSchedule_Scalar`)."""

    def __init__(self, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX):
        super().__init__()
        _check_endpoints(gamma_min, gamma_max)
        self.b = nn.Parameter(torch.tensor(float(gamma_min)))
        self.w = nn.Parameter(torch.tensor(float(gamma_max - gamma_min)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.b.to(t.dtype) + self.w.to(t.dtype).abs() * t


class _DenseMonotone(nn.Linear):
    """Linear layer with non-negative weights |W| (VDM code `DenseMonotone`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return nn.functional.linear(x, self.weight.abs().to(x.dtype), bias)


class MonotoneSchedule(nn.Module):
    """VDM learned monotone network γ̃(t) (VDM code `NoiseSchedule_NNet`), rescaled to learned endpoints γ(0), γ(1).

    γ(t) = γ₀ + (γ₁ − γ₀) (γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0)); γ₀, γ₁ start at γ_min, γ_max and are learned
    unless ``learn_endpoints=False``.
    """

    def __init__(
        self,
        gamma_min: float = GAMMA_MIN,
        gamma_max: float = GAMMA_MAX,
        n_features: int = 1024,
        learn_endpoints: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_endpoints(gamma_min, gamma_max)
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.l1 = _DenseMonotone(1, 1)
        self.l2 = _DenseMonotone(1, n_features)
        self.l3 = _DenseMonotone(n_features, 1, bias=False)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.l1.weight.fill_(gamma_max - gamma_min)
            self.l1.bias.fill_(gamma_min)
            self.l2.weight.copy_(torch.randn(n_features, 1, generator=g))
            self.l2.bias.copy_(torch.randn(n_features, generator=g))
            self.l3.weight.copy_(torch.randn(1, n_features, generator=g))
        endpoints = torch.tensor([float(gamma_min), float(gamma_max)])
        if learn_endpoints:
            self.endpoints = nn.Parameter(endpoints)
        else:
            self.register_buffer("endpoints", endpoints)
        self.n_features = n_features

    def _gamma_tilde(self, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1)
        h = self.l1(t)
        _h = 2.0 * (t - 0.5)
        _h = 2.0 * (torch.sigmoid(self.l2(_h)) - 0.5)
        return (h + self.l3(_h) / self.n_features).reshape(-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        shape = t.shape
        ends = self._gamma_tilde(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        gamma0, gamma1 = self.endpoints.to(t.dtype)
        unit = (self._gamma_tilde(t) - ends[0]) / (ends[1] - ends[0])
        return (gamma0 + (gamma1 - gamma0) * unit).reshape(shape)
