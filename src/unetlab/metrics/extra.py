"""FID, KID and CLIP score through torchmetrics, for users who have the Inception / CLIP weights (optional extra)."""

from __future__ import annotations

import torch

INSTALL = "pip install 'unetlab[metrics]'"


def _missing(metric: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"{metric}: needs torchmetrics[image] and its pretrained weights ({INSTALL}; the weights are "
        f"downloaded on first use, or set TORCH_HOME to a folder that holds them): {err}"
    )


def _uint8(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: shape {tuple(images.shape)} is not (N, 1|3, H, W) in [0, 1]")
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def fid(real: torch.Tensor, fake: torch.Tensor, feature: int = 2048) -> float:
    """Fréchet Inception Distance (Heusel et al. 2017) of `fake` against `real`, images NCHW in [0, 1]."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=feature)
    except Exception as err:  # torch-fidelity missing or weights not downloadable
        raise _missing("fid", err) from err
    metric.update(_uint8(real), real=True)
    metric.update(_uint8(fake), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, subset_size: int = 50) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): (mean, std) over subsets."""
    try:
        from torchmetrics.image.kid import KernelInceptionDistance

        metric = KernelInceptionDistance(subset_size=min(subset_size, len(real), len(fake)))
    except Exception as err:
        raise _missing("kid", err) from err
    metric.update(_uint8(real), real=True)
    metric.update(_uint8(fake), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def clip_score(images: torch.Tensor, prompts: list[str], model: str = "openai/clip-vit-base-patch16") -> float:
    """CLIP score (Hessel et al. 2021): 100 * mean cosine similarity of image and prompt embeddings."""
    try:
        from torchmetrics.multimodal.clip_score import CLIPScore

        metric = CLIPScore(model_name_or_path=model)  # type: ignore[arg-type]  # any hub id or local folder works
    except Exception as err:
        raise _missing("clip_score", err) from err
    return float(metric(_uint8(images), list(prompts)))
