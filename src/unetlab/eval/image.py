"""Per-image fidelity to a reference sample from the same noise: PSNR and SSIM (torchmetrics), images NCHW in [0, 1]."""

from __future__ import annotations

import torch


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"images: shapes {tuple(a.shape)} and {tuple(b.shape)} must be equal (N, C, H, W) in [0, 1]")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE) (data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check(a, b)
    return float(
        peak_signal_noise_ratio(a.float(), b.float(), data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean")
    )


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean structural similarity (Wang et al. 2004, Eq. 13; 11x11 Gaussian window, sigma 1.5; data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(a, b)
    kernel = min(11, a.shape[-1] - (1 - a.shape[-1] % 2), a.shape[-2] - (1 - a.shape[-2] % 2))
    return float(structural_similarity_index_measure(a.float(), b.float(), data_range=1.0, kernel_size=kernel))
