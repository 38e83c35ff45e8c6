"""Procedural captioned shapes: a coloured circle/square/triangle at one of 9 positions on a coloured background.

Every sample is a pure function of (seed, index), so the data set is infinite, deterministic and needs no disk.
Captions read "a red circle at the top left on a blue background"; `parse_caption` inverts them.
A fixed 10% of the (shape, colour, position, background) combinations is held out of training.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.2),
    "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}
COLOUR_NAMES = tuple(COLOURS)
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
ATTRIBUTES = {"shape": SHAPES, "colour": COLOUR_NAMES, "position": POSITIONS, "background": COLOUR_NAMES}
SPLITS = ("train", "test", "heldout")
HOLDOUT_FRACTION = 0.1
_SPLIT_SEEDS = {"train": 0, "test": 1, "heldout": 2}
_SUPERSAMPLE = 4
_CAPTION = re.compile(r"^a (\w+) (\w+) at the ([a-z ]+?) on a (\w+) background$")


def caption(shape: str, colour: str, position: str, background: str) -> str:
    """The caption of one combination of attributes."""
    return f"a {colour} {shape} at the {position} on a {background} background"


def parse_caption(text: str) -> dict[str, str]:
    """The attributes {"shape", "colour", "position", "background"} of a caption made by `caption`."""
    match = _CAPTION.match(text.strip().lower())
    if not match:
        raise ValueError(
            f"caption: {text!r} is not of the form 'a <colour> <shape> at the <position> on a <colour> background'"
        )
    colour, shape, position, background = match.groups()
    attrs = {"shape": shape, "colour": colour, "position": position, "background": background}
    for key, value in attrs.items():
        if value not in ATTRIBUTES[key]:
            raise ValueError(f"caption: {key} {value!r} is not one of {', '.join(ATTRIBUTES[key])}")
    return attrs


def all_combinations() -> torch.Tensor:
    """Every valid (shape, colour, position, background) index tuple (shape colour != background), (M, 4)."""
    grid = torch.cartesian_prod(*(torch.arange(len(v)) for v in ATTRIBUTES.values()))
    return grid[grid[:, 1] != grid[:, 3]]


def split_combinations(split: str) -> torch.Tensor:
    """The combinations a split draws from: "heldout" gets a fixed 10%, "train" and "test" the other 90%."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    combos = all_combinations()
    order = torch.randperm(len(combos), generator=torch.Generator().manual_seed(1234))
    n_held = round(HOLDOUT_FRACTION * len(combos))
    chosen = order[:n_held] if split == "heldout" else order[n_held:]
    return combos[chosen.sort().values]


def _masks(shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased coverage masks (B, 1, size, size) of shapes centred at (cx, cy) with half-extent r (pixels)."""
    n = size * _SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / _SUPERSAMPLE
    y, x = coords.view(1, n, 1), coords.view(1, 1, n)
    dx, dy = x - cx.view(-1, 1, 1), y - cy.view(-1, 1, 1)
    r = r.view(-1, 1, 1)
    circle = dx**2 + dy**2 <= r**2
    square = (dx.abs() <= 0.85 * r) & (dy.abs() <= 0.85 * r)
    # upward triangle: apex at (0, -r), base at y = +0.8r spanning x in [-r, r]
    top, base = -r, 0.8 * r
    half_width = r * (dy - top) / (base - top)
    triangle = (dy >= top) & (dy <= base) & (dx.abs() <= half_width)
    s = shape.view(-1, 1, 1)
    mask = torch.where(s == 0, circle, torch.where(s == 1, square, triangle)).float().unsqueeze(1)
    return F.avg_pool2d(mask, _SUPERSAMPLE)


def render(attrs: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Images (B, 3, size, size) in [0, 1] of attribute index rows (B, 4); size and jitter drawn from `generator`."""
    b = len(attrs)
    cell = size / 3.0
    row, col = attrs[:, 2] // 3, attrs[:, 2] % 3
    jitter = (torch.rand(b, 2, generator=generator) - 0.5) * (0.25 * cell)
    cx = (col.float() + 0.5) * cell + jitter[:, 0]
    cy = (row.float() + 0.5) * cell + jitter[:, 1]
    r = cell * (0.35 + 0.25 * torch.rand(b, generator=generator))
    mask = _masks(attrs[:, 0], cx, cy, r, size)
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    fg = palette[attrs[:, 1]].view(b, 3, 1, 1)
    bg = palette[attrs[:, 3]].view(b, 3, 1, 1)
    return mask * fg + (1 - mask) * bg


class ShapesDataset:
    """`ds[indices] -> {"images", "captions", "attributes"}`; sample i of a split is a pure function of (seed, i)."""

    def __init__(self, split: str = "train", size: int = 24, length: int = 100_000, seed: int = 0):
        if not isinstance(size, int) or size < 12:
            raise ValueError(f"size: {size!r} must be an int >= 12")
        self.combos = split_combinations(split)
        self.size, self.length = size, length
        self.seed = seed * 10 + _SPLIT_SEEDS[split]

    def __len__(self) -> int:
        return self.length

    def attributes(self, indices: torch.Tensor) -> torch.Tensor:
        """Attribute index rows (B, 4) of samples `indices`."""
        picks = [int(torch.randint(len(self.combos), (1,), generator=self._gen(int(i), 0))) for i in indices]
        return self.combos[torch.tensor(picks, dtype=torch.long)]

    def _gen(self, index: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 2 + stream)

    def __getitem__(self, indices: torch.Tensor) -> dict:
        indices = torch.as_tensor(indices).reshape(-1)
        attrs = self.attributes(indices)
        images = torch.cat([render(attrs[k : k + 1], self.size, self._gen(int(i), 1)) for k, i in enumerate(indices)])
        caps = [caption(*(ATTRIBUTES[key][int(v)] for key, v in zip(ATTRIBUTES, row))) for row in attrs]
        return {"images": images, "captions": caps, "attributes": attrs}


def heldout_captions(n: int = 500, seed: int = 0) -> list[str]:
    """`n` captions of the held-out combinations (never seen in training), drawn deterministically from `seed`."""
    return ShapesDataset("heldout", length=n, seed=seed)[torch.arange(n)]["captions"]
