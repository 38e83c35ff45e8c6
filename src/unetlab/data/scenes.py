"""Procedural 64×64 scenes for `mini-sd`: 1–3 objects on a 3×3 grid over a textured background, with captions.

Every scene is a pure function of (seed, split, index): its attributes come from a `random.Random` seeded by
them, its pixels from a vectorised, anti-aliased renderer, so the data set is unlimited and needs no disk.
A caption names every object's size, colour and shape, the background's colour and texture, and where the
objects are: "a big red star at the top left on a green striped background" (one object), "a small blue ring
left of a big white heart on a black plain background" (two: the relation holds on the grid), "a big red star
above a small blue ring and a small yellow cross on a purple checkered background" (three).

Composition, not memorisation, is tested: a fixed tenth of the (shape, colour, background colour) triples is
held out of `train`; every `test` scene has at least one object whose triple is held out.
"""

from __future__ import annotations

import math
import random
import re

import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle", "star", "heart", "ring", "cross", "diamond")
COLOURS = {
    "red": (0.90, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "yellow": (0.95, 0.90, 0.10),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.25, 0.95),
    "purple": (0.60, 0.15, 0.80),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "big")
TEXTURES = ("plain", "striped", "checkered", "gradient")
CELLS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
RELATIONS = ("left of", "right of", "above", "below")
SPLITS = ("train", "test")
SIZE = 64
MAX_OBJECTS = 3
HOLDOUT_FRACTION = 0.1
_SPLIT_SEEDS = {"train": 0, "test": 1}
_RADIUS = {"small": 0.26, "big": 0.42}  # half-extent as a fraction of a grid cell (64/3 px)
_SUPERSAMPLE = 3


def vocabulary() -> list[str]:
    """Every word a caption can use, sorted."""
    words = {"a", "an", "at", "the", "on", "background", "and", "of"}
    for group in (SHAPES, COLOUR_NAMES, SIZES, TEXTURES, CELLS, RELATIONS):
        for phrase in group:
            words.update(phrase.split())
    return sorted(words)


def check_caption(text: str) -> str:
    """`text` if every word is in the grammar's vocabulary (what mini-sd's tokenizer spells as one token each)."""
    unknown = [w for w in text.lower().split() if w not in _VOCABULARY]
    if unknown:
        raise ValueError(
            f"prompt: {text!r} uses words outside mini-sd's caption grammar: {', '.join(unknown)} "
            f"(known words: {', '.join(_VOCABULARY)})"
        )
    return text


def heldout_triples() -> frozenset[tuple[str, str, str]]:
    """The (shape, colour, background colour) triples never drawn in `train` (a fixed tenth of the valid ones)."""
    triples = [(s, c, b) for s in SHAPES for c in COLOUR_NAMES for b in COLOUR_NAMES if c != b]
    rng = random.Random(1234)
    return frozenset(rng.sample(triples, round(HOLDOUT_FRACTION * len(triples))))


_VOCABULARY = vocabulary()
_EXAMPLE = {
    "objects": [{"shape": "star", "colour": "red", "size": "big", "cell": 0}],
    "background": {"colour": "green", "texture": "striped"},
}
_HELDOUT = heldout_triples()
_HELDOUT_SORTED = sorted(_HELDOUT)


def _relation(a: int, b: int) -> list[str]:
    """The relations that hold from cell `a` to cell `b` on the 3×3 grid."""
    (ra, ca), (rb, cb) = divmod(a, 3), divmod(b, 3)
    return [name for name, holds in zip(RELATIONS, (ca < cb, ca > cb, ra < rb, ra > rb)) if holds]


def _draw_label(rng: random.Random, split: str) -> dict:
    """The attributes of one scene (see `sample`), drawn so that `split`'s rule on held-out triples holds."""
    while True:
        background = {"colour": rng.choice(COLOUR_NAMES), "texture": rng.choice(TEXTURES)}
        n = rng.randint(1, MAX_OBJECTS)
        cells = rng.sample(range(9), n)
        objects = []
        for k, cell in enumerate(cells):
            if split == "test" and k == 0:
                held = [t for t in _HELDOUT_SORTED if t[2] == background["colour"]]
                shape, colour, _ = rng.choice(held)
            else:
                shape = rng.choice(SHAPES)
                colour = rng.choice([c for c in COLOUR_NAMES if c != background["colour"]])
            objects.append({"shape": shape, "colour": colour, "size": rng.choice(SIZES), "cell": cell})
        if split == "train" and any((o["shape"], o["colour"], background["colour"]) in _HELDOUT for o in objects):
            continue
        label = {"objects": objects, "background": background}
        if n >= 2:
            label["relation"] = rng.choice(_relation(cells[0], cells[1]))
        return label


def _phrase(obj: dict) -> str:
    return f"a {obj['size']} {obj['colour']} {obj['shape']}"


def _article(colour: str) -> str:
    return "an" if colour[0] in "aeiou" else "a"


def caption(label: dict) -> str:
    """The caption of a scene's label (the grammar of this module's docstring)."""
    objects, bg = label["objects"], label["background"]
    if len(objects) == 1:
        head = f"{_phrase(objects[0])} at the {CELLS[objects[0]['cell']]}"
    else:
        head = f"{_phrase(objects[0])} {label['relation']} {_phrase(objects[1])}"
        if len(objects) == 3:
            head += f" and {_phrase(objects[2])}"
    return f"{head} on {_article(bg['colour'])} {bg['colour']} {bg['texture']} background"


_OBJECT = r"a (\w+) (\w+) (\w+)"
_BACKGROUND = r" on an? (\w+) (\w+) background$"
_ONE = re.compile(rf"^{_OBJECT} at the ([a-z ]+?){_BACKGROUND}")
_MANY = re.compile(rf"^{_OBJECT} (left of|right of|above|below) {_OBJECT}(?: and {_OBJECT})?{_BACKGROUND}")


def parse_caption(text: str) -> dict:
    """The label a caption states (the inverse of `caption`): objects without cells, except a single object's,
    the relation of the first two objects, the background."""
    text = check_caption(text).strip().lower()
    one, many = _ONE.match(text), _MANY.match(text)
    if not (one or many):
        raise ValueError(f"prompt: {text!r} does not follow mini-sd's caption grammar (e.g. {caption(_EXAMPLE)!r})")
    groups = list((one or many).groups())
    background = {"colour": groups[-2], "texture": groups[-1]}
    if one:
        size, colour, shape, cell = groups[:4]
        objects = [{"shape": shape, "colour": colour, "size": size, "cell": CELLS.index(cell) if cell in CELLS else -1}]
        label = {"objects": objects, "background": background}
    else:
        parts = [groups[0:3], groups[4:7]] + ([groups[7:10]] if groups[7] else [])
        objects = [{"shape": sh, "colour": c, "size": sz} for sz, c, sh in parts]
        label = {"objects": objects, "background": background, "relation": groups[3]}
    for o in label["objects"]:
        for key, values in (("shape", SHAPES), ("colour", COLOUR_NAMES), ("size", SIZES)):
            if o[key] not in values:
                raise ValueError(f"prompt: {o[key]!r} is not a {key} ({', '.join(values)}) in {text!r}")
        if o.get("cell") == -1:
            raise ValueError(f"prompt: the position in {text!r} is not one of {', '.join(CELLS)}")
    if background["colour"] not in COLOUR_NAMES or background["texture"] not in TEXTURES:
        raise ValueError(f"prompt: the background of {text!r} is not <colour> <texture> ({', '.join(TEXTURES)})")
    return label


def _jitter(rng: random.Random, label: dict) -> list[dict]:
    """Per-object continuous draws: centre offset (fraction of a cell), radius scale, rotation (radians)."""
    return [
        {
            "dx": rng.uniform(-0.12, 0.12),
            "dy": rng.uniform(-0.12, 0.12),
            "scale": rng.uniform(0.9, 1.1),
            "angle": rng.uniform(-math.pi / 12, math.pi / 12),
        }
        for _ in label["objects"]
    ]


def _shape_masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-masks (8, B, H, W) of every shape in local coordinates (u right, v down) scaled to half-extent 1."""
    rho = torch.sqrt(u**2 + v**2)
    theta = torch.atan2(v, u)
    sector = 2 * math.pi / 5
    phi = torch.remainder(theta + math.pi / 2, sector) - sector / 2  # 0 at each of the star's 5 tips (tip up)
    star = rho <= 1.0 - 0.58 * phi.abs() / (sector / 2)
    hx, hy = 1.15 * u, -1.15 * v + 0.15
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    triangle = (v >= -1) & (v <= 0.75) & (u.abs() <= (v + 1) / 1.75)
    cross = ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95))
    masks = (
        rho <= 1,
        torch.maximum(u.abs(), v.abs()) <= 0.8,
        triangle,
        star,
        heart,
        (rho <= 1) & (rho >= 0.55),
        cross,
        u.abs() + v.abs() <= 1,
    )
    return torch.stack(masks).float()


def _background(labels: list[dict], rng_params: list[dict], n: int) -> torch.Tensor:
    """Background images (B, 3, n, n) on the supersampled grid: a colour and a lighter/darker shade in a texture."""
    b = len(labels)
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / n * SIZE
    y, x = coords.view(1, n, 1).expand(b, n, n), coords.view(1, 1, n).expand(b, n, n)
    base = torch.tensor([COLOURS[lab["background"]["colour"]] for lab in labels]).view(b, 3, 1, 1)
    luminance = (base * torch.tensor([0.3, 0.59, 0.11]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    shade = 0.65 * base + 0.35 * (luminance < 0.5).float()
    period = torch.tensor([p["period"] for p in rng_params]).view(b, 1, 1)
    phase = torch.tensor([p["phase"] for p in rng_params]).view(b, 1, 1)
    stripes = torch.remainder((x + y) / period + phase, 1.0) < 0.5
    checker = (torch.floor(x / period + phase) + torch.floor(y / period + phase)).remainder(2) < 1
    gradient = (y / SIZE).clamp(0, 1)
    texture = torch.tensor([TEXTURES.index(lab["background"]["texture"]) for lab in labels]).view(b, 1, 1)
    mix = torch.where(
        texture == 0,
        torch.zeros_like(gradient),
        torch.where(texture == 1, stripes.float(), torch.where(texture == 2, checker.float(), gradient)),
    )
    return base * (1 - mix.unsqueeze(1)) + shade * mix.unsqueeze(1)


def render(labels: list[dict], jitters: list[list[dict]], textures: list[dict]) -> torch.Tensor:
    """Images (B, 3, 64, 64) in [0, 1] of scene labels with their continuous draws (anti-aliased by supersampling)."""
    n = SIZE * _SUPERSAMPLE
    image = _background(labels, textures, n)
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / _SUPERSAMPLE
    y, x = coords.view(1, n, 1), coords.view(1, 1, n)
    cell = SIZE / 3
    for k in range(MAX_OBJECTS):
        rows = [i for i, lab in enumerate(labels) if len(lab["objects"]) > k]
        if not rows:
            break
        objs = [labels[i]["objects"][k] for i in rows]
        jit = [jitters[i][k] for i in rows]
        cx = torch.tensor([(o["cell"] % 3 + 0.5 + j["dx"]) * cell for o, j in zip(objs, jit)]).view(-1, 1, 1)
        cy = torch.tensor([(o["cell"] // 3 + 0.5 + j["dy"]) * cell for o, j in zip(objs, jit)]).view(-1, 1, 1)
        r = torch.tensor([_RADIUS[o["size"]] * cell * j["scale"] for o, j in zip(objs, jit)]).view(-1, 1, 1)
        angle = torch.tensor([j["angle"] for j in jit]).view(-1, 1, 1)
        dx, dy = (x - cx) / r, (y - cy) / r
        u = torch.cos(angle) * dx + torch.sin(angle) * dy
        v = -torch.sin(angle) * dx + torch.cos(angle) * dy
        which = torch.tensor([SHAPES.index(o["shape"]) for o in objs])
        mask = _shape_masks(u, v)[which, torch.arange(len(rows))].unsqueeze(1)
        colour = torch.tensor([COLOURS[o["colour"]] for o in objs]).view(-1, 3, 1, 1)
        idx = torch.tensor(rows)
        image[idx] = image[idx] * (1 - mask) + colour * mask
    return F.avg_pool2d(image, _SUPERSAMPLE).clamp(0, 1)


def _check(n, seed, split) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: {n!r} must be a positive int")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: {seed!r} must be a non-negative int")
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")


def _rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random((seed * 1_000_003 + index) * 2 + _SPLIT_SEEDS[split])


def scenes(indices, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, list[str], list[dict]]:
    """The scenes `indices` of (seed, split): images (B, 3, 64, 64) in [0, 1], captions, labels."""
    labels, jitters, textures = [], [], []
    for i in indices:
        rng = _rng(seed, split, int(i))
        label = _draw_label(rng, split)
        labels.append(label)
        jitters.append(_jitter(rng, label))
        textures.append({"period": rng.uniform(7.0, 11.0), "phase": rng.random()})
    return render(labels, jitters, textures), [caption(lab) for lab in labels], labels


def sample(n: int, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, list[str], list[dict]]:
    """`n` scenes of `split` ("train" | "test"): images (n, 3, 64, 64) in [0, 1], captions, and labels
    {"objects": [{"shape", "colour", "size", "cell"}, …], "background": {"colour", "texture"}} (plus "relation",
    the one the caption states, for two or more objects); deterministic per (seed, split)."""
    _check(n, seed, split)
    return scenes(range(n), seed, split)


class ScenesDataset:
    """`ds[indices] -> {"images", "captions"}` for the training loop; scene i is `sample`'s scene i."""

    def __init__(self, split: str = "train", length: int = 1_000_000, seed: int = 0):
        _check(length, seed, split)
        self.split, self.length, self.seed = split, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices) -> dict:
        images, captions, _ = scenes(torch.as_tensor(indices).reshape(-1).tolist(), self.seed, self.split)
        return {"images": images, "captions": captions}
