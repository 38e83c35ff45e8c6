"""Synthetic shapes videos with known motion: one shape moving, growing or changing colour along a known path.

Clip i is a pure function of (seed, i). Each frame is rendered with the shapes generator's anti-aliased masks;
its caption names the frame's own attributes (the position follows the moving shape, the colour the nearest
named colour), and `edit` is the caption change the clip is edited with (a new colour, or a new shape).
`centres` and `radii` give the exact path, so a frame maps onto the next by x' = c_{t+1} + (r_{t+1}/r_t)(x - c_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .shapes import ATTRIBUTES, COLOURS, SHAPES, _masks, caption

MOTIONS = ("move", "grow", "recolour")
_COLOUR = torch.tensor(list(COLOURS.values()), dtype=torch.float32)


@dataclass(frozen=True)
class Clip:
    """Frames (T, 3, S, S) in [0, 1], per-frame captions and edited captions, and the path: centres (T, 2) as
    (x, y) pixels, radii (T,) pixels; `edit` = (attribute, new value)."""

    frames: torch.Tensor
    captions: list[str]
    edited_captions: list[str]
    centres: torch.Tensor
    radii: torch.Tensor
    motion: str
    edit: tuple[str, str]


def _cell_centre(index: int, size: int) -> tuple[float, float]:
    cell = size / 3
    return (index % 3 + 0.5) * cell, (index // 3 + 0.5) * cell


def _nearest_position(x: float, y: float, size: int) -> str:
    cell = size / 3
    col, row = min(int(x // cell), 2), min(int(y // cell), 2)
    return ATTRIBUTES["position"][3 * row + col]


def synthetic_clip(index: int, num_frames: int = 16, size: int = 24, seed: int = 0) -> Clip:
    """Clip `index`: motion MOTIONS[index % 3]; shape, colours, path and edit drawn from (seed, index)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames: expected an int >= 2, got {num_frames!r}")
    if not isinstance(size, int) or size < 12:
        raise ValueError(f"size: expected an int >= 12, got {size!r}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    motion = MOTIONS[index % len(MOTIONS)]

    def pick(n: int) -> int:
        return int(torch.randint(n, (1,), generator=g))

    shape, colours = pick(len(SHAPES)), torch.randperm(len(COLOURS), generator=g).tolist()
    fg, fg_end, bg, new_colour = colours[0], colours[1], colours[2], colours[3]
    t = torch.linspace(0, 1, num_frames)
    cell = size / 3
    if motion == "move":  # from one cell's centre to a horizontal or vertical neighbour's
        start = pick(9)
        row, col = divmod(start, 3)
        steps = [(dr, dc) for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)) if 0 <= row + dr < 3 and 0 <= col + dc < 3]
        dr, dc = steps[pick(len(steps))]
        a, b = torch.tensor(_cell_centre(start, size)), torch.tensor(_cell_centre(start + 3 * dr + dc, size))
        centres = a + t[:, None] * (b - a)
        radii = torch.full((num_frames,), 0.45 * cell)
    else:
        centres = torch.tensor(_cell_centre(pick(9), size)).expand(num_frames, 2).clone()
        radii = cell * (0.35 + 0.25 * t) if motion == "grow" else torch.full((num_frames,), 0.45 * cell)
    mix = t if motion == "recolour" else torch.zeros(num_frames)
    colour = (1 - mix)[:, None] * _COLOUR[fg] + mix[:, None] * _COLOUR[fg_end]
    mask = _masks(torch.full((num_frames,), shape), centres[:, 0], centres[:, 1], radii, size)
    frames = mask * colour.view(-1, 3, 1, 1) + (1 - mask) * _COLOUR[bg].view(1, 3, 1, 1)
    names = ATTRIBUTES["colour"]
    edit = (
        ("shape", SHAPES[(shape + 1 + pick(2)) % 3])
        if motion == "recolour" or index // 3 % 2
        else ("colour", names[new_colour])
    )
    caps, edited = [], []
    for k in range(num_frames):
        attrs = {
            "shape": SHAPES[shape],
            "colour": names[fg_end if mix[k] > 0.5 else fg],
            "position": _nearest_position(*centres[k].tolist(), size),
            "background": names[bg],
        }
        caps.append(caption(**attrs))
        edited.append(caption(**{**attrs, edit[0]: edit[1]}))
    return Clip(frames.clamp(0, 1), caps, edited, centres, radii, motion, edit)


def synthetic_clips(n: int, num_frames: int = 16, size: int = 24, seed: int = 0) -> list[Clip]:
    """Clips 0 .. n-1 (motions cycle through MOTIONS)."""
    return [synthetic_clip(i, num_frames, size, seed) for i in range(n)]
