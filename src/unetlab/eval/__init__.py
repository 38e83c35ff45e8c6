"""Quality metrics: classifier accuracy and Fréchet distance on the shipped models, PSNR/SSIM, optional FID/KID/CLIP."""

from .extra import clip_score, fid, kid
from .image import psnr, ssim
from .metrics import accuracy, features, frechet_distance, reference_stats

__all__ = ["accuracy", "clip_score", "features", "fid", "frechet_distance", "kid", "psnr", "reference_stats", "ssim"]
