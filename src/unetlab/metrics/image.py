"""Fidelity of images to a reference from the same noise, NCHW in [0, 1] (data range 1): the PSNR family, SSIM,
and a feature distance.

PSNR comes as three named statistics; every table says which one it reports:
- `psnr_per_image`: 10 log10(1 / MSE_i) for each image i (+inf where it is identical to its reference);
- `mean_psnr`: the mean over images of min(PSNR_i, `PSNR_CAP`), so that one identical image counts as the cap
  instead of making the mean infinite (the bench's PSNR column and the tuner's psnr budget);
- `psnr_of_mean_mse`: 10 log10(1 / mean_i MSE_i) (the analysis tables; +inf only when every image is identical).
"""

from __future__ import annotations

import math

import torch

PSNR_CAP = 100.0  # dB: an identical image (infinite PSNR) counts as this, a value JSON can hold


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"images: shapes {tuple(a.shape)} and {tuple(b.shape)} must be equal (N, C, H, W) in [0, 1]")


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / MSE_i) per image, shape (N,) (torchmetrics' arithmetic, float32 unless given float64)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check(a, b)
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    return peak_signal_noise_ratio(a.to(dtype), b.to(dtype), data_range=1.0, dim=(1, 2, 3), reduction="none")


def mean_psnr(a: torch.Tensor, b: torch.Tensor, cap: float = PSNR_CAP) -> float:
    """The mean over images of min(PSNR_i, `cap`)."""
    return float(psnr_per_image(a, b).clamp(max=cap).mean())


def mse_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, shape (N,), in float64."""
    _check(a, b)
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def psnr_of_mean_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """10 log10(1 / mean_i MSE_i); +inf when every image equals its reference."""
    return psnr_from_mse(float(mse_per_image(a, b).mean()))


def psnr_from_mse(mse: float) -> float:
    """10 log10(1 / `mse`) (data range 1); +inf for 0."""
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def ssim_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, Eq. 13; Gaussian window 11x11 or the largest odd size
    that fits, sigma 1.5), shape (N,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(a, b)
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    k = _kernel(a)
    per_image = structural_similarity_index_measure(
        a.to(dtype), b.to(dtype), data_range=1.0, kernel_size=k, reduction="none"
    )
    assert isinstance(per_image, torch.Tensor)  # a tuple only with return_full_image / return_contrast_sensitivity
    return per_image.reshape(-1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean structural similarity over images (`ssim_per_image`)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(a, b)
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    mean = structural_similarity_index_measure(a.to(dtype), b.to(dtype), data_range=1.0, kernel_size=_kernel(a))
    assert isinstance(mean, torch.Tensor)  # a tuple only with return_full_image / return_contrast_sensitivity
    return float(mean)


def _kernel(a: torch.Tensor) -> int:
    """The SSIM window: 11, or the largest odd size that fits the image."""
    k = min(11, *a.shape[-2:])
    return k if k % 2 else k - 1


def perceptual(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Mean over images of the distance between unit-normalised features (0: same reading; 2: opposite)."""
    a = torch.nn.functional.normalize(features_a.double(), dim=1)
    b = torch.nn.functional.normalize(features_b.double(), dim=1)
    return float((a - b).norm(dim=1).mean())


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR and SSIM of (n, C, H, W) outputs against `target`, in float64."""
    if pred.shape != target.shape:
        raise ValueError(f"pred: shape {tuple(pred.shape)} differs from target {tuple(target.shape)}")
    mse = mse_per_image(pred, target)
    return {"mse": mse, "psnr": 10 * torch.log10(1.0 / mse), "ssim": ssim_per_image(pred.double(), target.double())}


def summarize(per_sample: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean and standard deviation over images; "psnr" is `psnr_of_mean_mse` (no standard deviation)."""
    out = {}
    for name, v in per_sample.items():
        v = v.double()
        out[name] = float(v.mean())
        out[f"{name}_std"] = float(v.std()) if v.numel() > 1 else 0.0
    out["psnr"] = psnr_from_mse(out["mse"])
    out.pop("psnr_std", None)
    return out
