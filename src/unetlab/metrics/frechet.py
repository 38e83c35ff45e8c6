"""Fréchet distance between Gaussians fitted to feature sets (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982)."""

from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma): mean and unbiased covariance of features (N, D), in float64."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features: shape {tuple(features.shape)} is not (N >= 2, D)")
    x = features.double()
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_gaussian(mu_1: torch.Tensor, sigma_1: torch.Tensor, mu_2: torch.Tensor, sigma_2: torch.Tensor) -> float:
    """d^2 = ||mu_1 - mu_2||^2 + Tr(sigma_1 + sigma_2 - 2 (sigma_1^1/2 sigma_2 sigma_1^1/2)^1/2) (Heusel 2017, Eq.
    6)."""
    s1_half = _sqrtm_psd(sigma_1.double())
    cross = torch.linalg.eigvalsh(s1_half @ sigma_2.double() @ s1_half).clamp_min(0).sqrt().sum()
    d2 = (mu_1.double() - mu_2.double()).pow(2).sum() + sigma_1.double().trace() + sigma_2.double().trace() - 2 * cross
    return float(d2.clamp_min(0))
