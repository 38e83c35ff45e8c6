"""Write a batch of images (N, C, H, W) in [0, 1] as one PNG grid, atomically."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..atomic import write


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> torch.Tensor:
    """A (H', W', 3) uint8 grid of `images` (N, 1|3, H, W) in [0, 1], `nrow` images per row."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: shape {tuple(images.shape)} is not (N, 1|3, H, W)")
    images = images.detach().float().clamp(0, 1).cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(3, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[
            i
        ]
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (grid.permute(1, 2, 0) * 255).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    """Save `images` as a PNG grid at `path` (written to a temporary file, then renamed)."""
    from PIL import Image

    grid = Image.fromarray(image_grid(images, nrow, scale=scale).numpy())
    return write(path, lambda tmp: grid.save(tmp, format="PNG"))
