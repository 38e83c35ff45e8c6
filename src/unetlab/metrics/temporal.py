"""Temporal consistency of an edited video whose true motion is known (synthetic clips, `unetlab.data.videos`).

- `warp_next(frames, centres, radii, angles=None)`: frame t+1 resampled into frame t's coordinates by the known
  motion, x' = c_{t+1} + (r_{t+1} / r_t) R(a_{t+1} - a_t)(x - c_t) (bilinear, border padding; R rotates by the
  angle, radians, in image coordinates: x right, y down; no angles: no rotation).
- `compensated_error`: mean |E_t - warp(E_{t+1})|, the change left after the motion is undone.
- `flicker`: the edit's mean frame-to-frame change over the input's own (1 = changes exactly as much as the input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(frames: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor | None) -> None:
    if frames.ndim != 4 or len(frames) < 2 or frames.shape[-1] != frames.shape[-2]:
        raise ValueError(f"frames: expected (T >= 2, C, S, S), got {tuple(frames.shape)}")
    if tuple(centres.shape) != (len(frames), 2) or tuple(radii.shape) != (len(frames),):
        raise ValueError(
            f"centres, radii: expected ({len(frames)}, 2) and ({len(frames)},), got "
            f"{tuple(centres.shape)} and {tuple(radii.shape)}"
        )
    if angles is not None and tuple(angles.shape) != (len(frames),):
        raise ValueError(f"angles: expected ({len(frames)},), got {tuple(angles.shape)}")


def warp_next(
    frames: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor | None = None
) -> torch.Tensor:
    """Frames 1..T-1 mapped back onto frames 0..T-2 by the known motion, (T-1, C, S, S)."""
    _check(frames, centres, radii, angles)
    size = frames.shape[-1]
    pix = torch.arange(size, dtype=frames.dtype) + 0.5
    y, x = torch.meshgrid(pix, pix, indexing="ij")
    c_t, c_n = centres[:-1].to(frames.dtype), centres[1:].to(frames.dtype)
    s = (radii[1:] / radii[:-1]).to(frames.dtype).view(-1, 1, 1)
    dx, dy = x - c_t[:, 0].view(-1, 1, 1), y - c_t[:, 1].view(-1, 1, 1)
    if angles is not None:
        turn = (angles[1:] - angles[:-1]).to(frames.dtype).view(-1, 1, 1)
        dx, dy = torch.cos(turn) * dx - torch.sin(turn) * dy, torch.sin(turn) * dx + torch.cos(turn) * dy
    src_x = c_n[:, 0].view(-1, 1, 1) + s * dx
    src_y = c_n[:, 1].view(-1, 1, 1) + s * dy
    grid = torch.stack([src_x, src_y], dim=-1) * (2 / size) - 1
    return F.grid_sample(frames[1:], grid, mode="bilinear", padding_mode="border", align_corners=False)


def compensated_error(
    frames: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor | None = None
) -> float:
    """Mean absolute difference between each frame and the next one moved back by the known motion."""
    return (frames[:-1] - warp_next(frames, centres, radii, angles)).abs().mean().item()


def frame_change(frames: torch.Tensor) -> float:
    """Mean absolute frame-to-frame difference."""
    if frames.ndim != 4 or len(frames) < 2:
        raise ValueError(f"frames: expected (T >= 2, C, H, W), got {tuple(frames.shape)}")
    return (frames[1:] - frames[:-1]).abs().mean().item()


def flicker(edited: torch.Tensor, source: torch.Tensor) -> float:
    """The edit's frame-to-frame change over the source video's own."""
    if edited.shape != source.shape:
        raise ValueError(f"edited: shape {tuple(edited.shape)} differs from the source's {tuple(source.shape)}")
    return frame_change(edited) / max(frame_change(source), 1e-12)
