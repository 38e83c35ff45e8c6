"""scikit-learn's bundled 8x8 handwritten digits, upsampled, with a fixed train/test split."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPLITS = ("train", "test")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits(split: str = "train", size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, size, size) float in [0, 1], labels (N,) int64) of the fixed `split` ("train" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: {size!r} must be an int >= 8 (the digits are 8x8)")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = round(TEST_FRACTION * len(labels))
    index = order[n_test:] if split == "train" else order[:n_test]
    images = images[index.sort().values]
    labels = labels[index.sort().values]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return images.clamp(0.0, 1.0), labels


class DigitsDataset:
    """Batched access to a digits split: `ds[indices] -> {"images": (B, 1, S, S) in [0, 1], "labels": (B,)}`."""

    def __init__(self, split: str = "train", size: int = 16):
        self.images, self.labels = load_digits(split, size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: torch.Tensor) -> dict:
        return {"images": self.images[indices], "labels": self.labels[indices]}
