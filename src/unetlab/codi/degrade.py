"""The conditional tasks on 16x16 digits: 4x super-resolution and box inpainting, as deterministic degradations
(images (N, C, H, W) in [0, 1] -> conditions in [0, 1]); random boxes come from an explicit generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import mean_psnr

TASKS = ("sr4", "inpaint")
SR_FACTOR = 4
BOX_AREA = (0.25, 0.5)


def condition_shape(task: str, channels: int, size: int) -> tuple[int, int]:
    """(condition channels, condition size) of `task` on images with `channels` channels of `size` x `size`."""
    if task == "sr4":
        if size % SR_FACTOR:
            raise ValueError(f"size: {size} is not divisible by {SR_FACTOR} (sr4)")
        return channels, size // SR_FACTOR
    if task == "inpaint":
        return channels + 1, size
    raise ValueError(f"task: {task!r} is not one of {', '.join(TASKS)}")


def _box_sizes(size: int) -> list[tuple[int, int]]:
    lo, hi = BOX_AREA[0] * size * size, BOX_AREA[1] * size * size
    return [(h, w) for h in range(1, size + 1) for w in range(1, size + 1) if lo <= h * w <= hi]


def box_masks(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) masks, 1 inside one axis-aligned box per image: (h, w) uniform over the integer sizes
    covering a quarter to a half of the image, position uniform over the places it fits."""
    sizes = _box_sizes(size)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        h, w = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
        top = int(torch.randint(size - h + 1, (1,), generator=generator))
        left = int(torch.randint(size - w + 1, (1,), generator=generator))
        masks[i, :, top : top + h, left : left + w] = 1
    return masks


def drawn_box_masks(n: int, size: int, draws) -> torch.Tensor:
    """`box_masks`' distribution with its draws made through a `unetlab.train.draws.Draws` (training: the same
    boxes however many processes share the batch)."""
    sizes = _box_sizes(size)
    pick, u_top, u_left = draws.randint(len(sizes), n), draws.rand(n), draws.rand(n)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        h, w = sizes[int(pick[i])]
        top = min(int(u_top[i] * (size - h + 1)), size - h)
        left = min(int(u_left[i] * (size - w + 1)), size - w)
        masks[i, :, top : top + h, left : left + w] = 1
    return masks


def degrade(
    task: str, images: torch.Tensor, generator: torch.Generator | None = None, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """sr4: 4x4 area average (a 4x smaller image); inpaint: [image * (1 - m), m] with `masks` or boxes drawn
    from `generator`."""
    if task == "sr4":
        return F.avg_pool2d(images, SR_FACTOR)
    if task == "inpaint":
        if masks is None:
            if generator is None:
                raise ValueError("generator: inpaint draws its boxes from a generator (or pass masks)")
            masks = box_masks(images.shape[0], images.shape[-1], generator)
        masks = masks.to(images)
        return torch.cat([images * (1 - masks), masks], dim=1)
    raise ValueError(f"task: {task!r} is not one of {', '.join(TASKS)}")


def heldout_conditions(task: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The fixed conditions of a held-out split: `degrade` with a generator seeded by `seed`."""
    return degrade(task, images, torch.Generator().manual_seed(seed))


def condition_consistency(task: str, outputs: torch.Tensor, condition: torch.Tensor) -> float:
    """PSNR (dB) between the output degraded again and the input condition: sr4 on the 4x4 images, inpaint on
    the known (unmasked) pixels only."""
    if task == "sr4":
        return mean_psnr(degrade(task, outputs), condition)
    mask = condition[:, -1:]
    known = 1 - mask
    mse = ((outputs - condition[:, :-1]) ** 2 * known).flatten(1).sum(1) / (known.flatten(1).sum(1) * outputs.shape[1])
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())
