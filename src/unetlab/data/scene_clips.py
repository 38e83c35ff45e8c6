"""Videos of `mini-sd` scenes with known motion: one object moving across the image, rotating, or changing size,
on a plain background, rendered frame by frame with the scenes renderer (`unetlab.data.scenes.render`).

Clip i is a pure function of (seed, i): motion MOTIONS[i % 3], edit EDITS[i // 3 % 2], the rest drawn from a
`random.Random` seeded by them. Each frame has its scene label (the object's cell follows its centre, its size
class its radius) and caption; `edit` = (attribute, new value) is what the clip is edited to, with the judge's
score names as attributes ("colour": the object's, "background_colour"), carried by every edited label and caption.
`centres`, `radii` and `angles` give the exact motion, x' = c_{t+1} + (r_{t+1}/r_t) R(a_{t+1} - a_t)(x - c_t)
(`unetlab.metrics.warp_next`); the background is plain so that this maps the whole frame, not only the object.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch

from . import scenes
from .videos import Clip

MOTIONS = ("move", "rotate", "grow")
EDITS = ("colour", "background_colour")
TURN = math.pi  # a rotating clip turns by this much, from -TURN/2 to TURN/2 or back
_ROTATING = ("triangle", "star", "heart", "cross")  # no rotational symmetry that hides it, never a square<->diamond


@dataclass(frozen=True)
class SceneClip(Clip):
    """A `videos.Clip` of 64x64 scenes, plus per-frame scene labels, the edited labels, and the object's rotation
    `angles` (T,) in radians (image coordinates, x right, y down)."""

    labels: list[dict]
    edited_labels: list[dict]
    angles: torch.Tensor


def _check(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _path(motion: str, rng: random.Random, size: str, t: torch.Tensor):
    """Centres (T, 2), radii (T,), angles (T,) of `motion` over times `t` in [0, 1]."""
    cell = scenes.SIZE / 3
    n = len(t)
    radius = scenes._RADIUS[size] * cell
    if motion == "move":  # across the image: from one end of a row or column to the other
        line, ends = rng.randrange(3), rng.choice(((0, 2), (2, 0)))
        a, b = (torch.tensor([e + 0.5, line + 0.5]) * cell for e in ends)
        if rng.random() < 0.5:
            a, b = a.flip(0), b.flip(0)
        return a + t[:, None] * (b - a), torch.full((n,), radius), torch.zeros(n)
    k = rng.randrange(9)
    centres = (torch.tensor([k % 3 + 0.5, k // 3 + 0.5]) * cell).expand(n, 2).clone()
    if motion == "rotate":
        return centres, torch.full((n,), radius), rng.choice((1, -1)) * TURN * (t - 0.5)
    small, big = (scenes._RADIUS[s] * cell for s in scenes.SIZES)
    u = t if rng.random() < 0.5 else 1 - t
    return centres, small + u * (big - small), torch.zeros(n)


def scene_clip(index: int, num_frames: int = 16, seed: int = 0) -> SceneClip:
    """Clip `index`: motion MOTIONS[index % 3], edit EDITS[index // 3 % 2]; object, colours and path from (seed,
    index)."""
    _check("index", index, 0)
    _check("num_frames", num_frames, 2)
    _check("seed", seed, 0)
    rng = random.Random(seed * 1_000_003 + index)
    motion, attribute = MOTIONS[index % len(MOTIONS)], EDITS[index // len(MOTIONS) % len(EDITS)]
    shape = rng.choice(_ROTATING if motion == "rotate" else scenes.SHAPES)
    colour, background, new = rng.sample(scenes.COLOUR_NAMES, 3)
    size = rng.choice(scenes.SIZES)
    centres, radii, angles = _path(motion, rng, size, torch.linspace(0, 1, num_frames))
    cell = scenes.SIZE / 3
    threshold = sum(scenes._RADIUS.values()) / 2 * cell  # the size class changes halfway between small and big
    labels, jitters = [], []
    for (x, y), r, a in zip(centres.tolist(), radii.tolist(), angles.tolist()):
        col, row = min(int(x // cell), 2), min(int(y // cell), 2)
        frame_size = size if motion != "grow" else scenes.SIZES[r >= threshold]
        obj = {"shape": shape, "colour": colour, "size": frame_size, "cell": 3 * row + col}
        labels.append({"objects": [obj], "background": {"colour": background, "texture": "plain"}})
        scale = r / scenes._RADIUS[frame_size] / cell
        jitters.append([{"dx": x / cell - col - 0.5, "dy": y / cell - row - 0.5, "scale": scale, "angle": a}])
    edited = copy.deepcopy(labels)
    for lab in edited:
        (lab["objects"][0] if attribute == "colour" else lab["background"])["colour"] = new
    frames = scenes.render(labels, jitters, [{"period": 9.0, "phase": 0.0}] * num_frames)
    return SceneClip(
        frames,
        [scenes.caption(lab) for lab in labels],
        [scenes.caption(lab) for lab in edited],
        centres,
        radii,
        motion,
        (attribute, new),
        labels,
        edited,
        angles,
    )


def scene_clips(n: int, num_frames: int = 16, seed: int = 0) -> list[SceneClip]:
    """Clips 0 .. n-1 (motions cycle through MOTIONS, edits through EDITS every len(MOTIONS) clips)."""
    _check("n", n, 1)
    return [scene_clip(i, num_frames, seed) for i in range(n)]
