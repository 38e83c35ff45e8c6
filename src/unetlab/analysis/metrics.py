"""How much a final output changed against a reference run: MSE, PSNR, SSIM, and the model's own quality."""

from __future__ import annotations

import importlib
import math

import torch


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample MSE, PSNR = 10 log10(1 / MSE) (data range 1) and SSIM of (n, C, H, W) outputs in [0, 1]."""
    if pred.shape != target.shape:
        raise ValueError(f"pred: shape {tuple(pred.shape)} differs from target {tuple(target.shape)}")
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = pred.double(), target.double()
    mse = (pred - target).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1.0 / mse)
    k = min(11, *pred.shape[-2:])
    k = k if k % 2 else k - 1
    ssim = structural_similarity_index_measure(pred, target, data_range=1.0, kernel_size=k, reduction="none")
    return {"mse": mse, "psnr": psnr, "ssim": ssim.reshape(-1)}


def summarize(per_sample: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean and standard deviation over samples; PSNR is averaged as the PSNR of the mean MSE (finite for
    identical outputs only when MSE > 0, else +inf)."""
    out = {}
    for name, v in per_sample.items():
        v = v.double()
        out[name] = float(v.mean())
        out[f"{name}_std"] = float(v.std()) if v.numel() > 1 else 0.0
    mse = out["mse"]
    out["psnr"] = 10 * math.log10(1.0 / mse) if mse > 0 else math.inf
    out.pop("psnr_std", None)
    return out


def model_accuracy(model_name: str, images: torch.Tensor, labels) -> dict[str, float] | None:
    """The scalar results of `unetlab.eval.accuracy(model_name, images, labels)` as {"quality.<name>": value};
    None when that API or its classifier weights are not available."""
    try:
        accuracy = importlib.import_module("unetlab.eval").accuracy
    except (ImportError, AttributeError):
        return None
    labels = None if labels is None or any(x is None for x in labels) else list(labels)
    try:
        result = accuracy(model_name, images, labels)
    except (FileNotFoundError, OSError):
        return None
    return {f"quality.{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))}
