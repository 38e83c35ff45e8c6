"""Image metrics with named statistics (the PSNR family, SSIM, feature distance), the Fréchet distance between
Gaussians, temporal consistency of videos, and FID/KID/CLIP score through torchmetrics; a leaf: it imports nothing
from the rest of unetlab."""

from .extra import clip_score, fid, kid
from .frechet import frechet_gaussian, gaussian_stats
from .image import (
    PSNR_CAP,
    image_metrics,
    mean_psnr,
    mse_per_image,
    perceptual,
    psnr_of_mean_mse,
    psnr_per_image,
    ssim,
    ssim_per_image,
    summarize,
)
from .temporal import compensated_error, flicker, frame_change, warp_next

__all__ = [
    "PSNR_CAP",
    "clip_score",
    "compensated_error",
    "fid",
    "flicker",
    "frame_change",
    "frechet_gaussian",
    "gaussian_stats",
    "image_metrics",
    "kid",
    "mean_psnr",
    "mse_per_image",
    "perceptual",
    "psnr_of_mean_mse",
    "psnr_per_image",
    "ssim",
    "ssim_per_image",
    "summarize",
    "warp_next",
]
