"""A folder of the user's own images, resized and centre-cropped to a square, held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _square(img, size: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def load_folder(path: str | Path, size: int, channels: int = 3) -> torch.Tensor:
    """All images under `path` (recursively), centre-cropped and resized to `size`, as (N, C, size, size) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels: {channels!r} is not one of 1, 3")
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"data: folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"data: {root} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise ValueError(f"data: folder {root} holds no images (looked for {', '.join(EXTENSIONS)})")
    images = []
    for file in files:
        try:
            with Image.open(file) as img:
                img = img.convert("L" if channels == 1 else "RGB")
                arr = np.asarray(_square(img, size), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"data: cannot read image {file}: {err}") from err
        images.append(torch.from_numpy(arr.reshape(size, size, channels)).permute(2, 0, 1))
    return torch.stack(images)


class FolderDataset:
    """Batched access to an image folder: `ds[indices] -> {"images": (B, C, S, S) in [0, 1]}`."""

    def __init__(self, path: str | Path, size: int, channels: int = 3):
        self.images = load_folder(path, size, channels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: torch.Tensor) -> dict:
        return {"images": self.images[indices]}
