"""The `mini-sd` judge: a CNN that reads a scene back from its pixels — each 3×3 grid cell's object (shape or
empty, colour, size) and the background's colour and texture — so that generated images can be scored against
the attributes their captions state (GenEval-style, Ghosh et al. 2023, Sec. 3)."""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from ..data import scenes

EMPTY = "empty"
CELL_HEADS = {"shape": (EMPTY, *scenes.SHAPES), "colour": scenes.COLOUR_NAMES, "size": scenes.SIZES}
SCENE_HEADS = {"background_colour": scenes.COLOUR_NAMES, "texture": scenes.TEXTURES}


def head_classes() -> dict[str, tuple[str, ...]]:
    """Every head's name and class names: `cell<k>.<attribute>` for the 9 cells, then the background's two."""
    heads = {f"cell{k}.{attr}": names for k in range(9) for attr, names in CELL_HEADS.items()}
    return {**heads, **SCENE_HEADS}


def targets(labels: list[dict]) -> dict[str, torch.Tensor]:
    """Class indices of every head for scene labels (`unetlab.data.scenes.sample`); colour and size of an empty
    cell are -100 (ignored by the loss)."""
    out: dict[str, list[int]] = {name: [] for name in head_classes()}
    for label in labels:
        by_cell = {o["cell"]: o for o in label["objects"]}
        for k in range(9):
            obj = by_cell.get(k)
            out[f"cell{k}.shape"].append(CELL_HEADS["shape"].index(obj["shape"]) if obj else 0)
            out[f"cell{k}.colour"].append(scenes.COLOUR_NAMES.index(obj["colour"]) if obj else -100)
            out[f"cell{k}.size"].append(scenes.SIZES.index(obj["size"]) if obj else -100)
        out["background_colour"].append(scenes.COLOUR_NAMES.index(label["background"]["colour"]))
        out["texture"].append(scenes.TEXTURES.index(label["background"]["texture"]))
    return {name: torch.tensor(v) for name, v in out.items()}


CROP = 32  # px: a cell (64/3 px) and the margin an object's jitter and size can reach


def cell_crops(images: torch.Tensor) -> torch.Tensor:
    """The 9 crops (N, 9, C, 32, 32) centred on the 3x3 grid's cells (edges replicated)."""
    half = CROP // 2
    padded = nn.functional.pad(images, (half,) * 4, mode="replicate")
    centres = [round((i + 0.5) * scenes.SIZE / 3) + half for i in range(3)]
    return torch.stack(
        [padded[:, :, cy - half : cy + half, cx - half : cx + half] for cy in centres for cx in centres], 1
    )


def _block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]


class SceneJudge(ModelMixin, ConfigMixin):
    """One CNN shared by the 9 cell crops (32x32 -> a `cell_dim` feature -> shape, colour and size heads) and a
    strided CNN over the whole image for the background (colour, texture); the Fréchet features are the 9 cell
    features and the background feature, concatenated."""

    @register_to_config
    def __init__(self, width: int = 32, cell_dim: int = 32):
        super().__init__()
        w = width
        self.cell = nn.Sequential(
            *_block(3, w),
            *_block(w, w),
            nn.MaxPool2d(2),
            *_block(w, 2 * w),
            *_block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_block(2 * w, 4 * w),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * w * 16, 128),
            nn.SiLU(),
            nn.Linear(128, cell_dim),
            nn.SiLU(),
        )
        self.scene = nn.Sequential(
            *_block(3, 16, 2), *_block(16, 32, 2), *_block(32, cell_dim, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.cell_heads = nn.ModuleDict({a: nn.Linear(cell_dim, len(c)) for a, c in CELL_HEADS.items()})
        self.scene_heads = nn.ModuleDict({a: nn.Linear(cell_dim, len(c)) for a, c in SCENE_HEADS.items()})

    def _parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, scenes.SIZE, scenes.SIZE):
            raise ValueError(f"images: shape {tuple(images.shape)} is not (N, 3, 64, 64) float in [0, 1]")
        x = images.to(self.dtype) * 2 - 1
        cells = self.cell(cell_crops(x).flatten(0, 1)).view(len(x), 9, -1)
        return cells, self.scene(x)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The (N, 10 * cell_dim) features of images (N, 3, 64, 64) in [0, 1]."""
        cells, scene = self._parts(images)
        return torch.cat([cells.flatten(1), scene], 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        cells, scene = self._parts(images)
        out = {f"cell{k}.{a}": head(cells[:, k]) for k in range(9) for a, head in self.cell_heads.items()}
        return {**out, **{a: head(scene) for a, head in self.scene_heads.items()}}

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 256) -> tuple[list[dict], torch.Tensor]:
        """What the judge sees in each image, as scene labels ({"objects": [...], "background": {...}}, objects
        in cell order), and the images' features."""
        labels, feats = [], []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size].to(self.device)
            feats.append(self.features(chunk).float().cpu())
            picks = {name: logits.argmax(1).tolist() for name, logits in self(chunk).items()}
            for j in range(len(chunk)):
                objects = [
                    {
                        "shape": CELL_HEADS["shape"][picks[f"cell{k}.shape"][j]],
                        "colour": scenes.COLOUR_NAMES[picks[f"cell{k}.colour"][j]],
                        "size": scenes.SIZES[picks[f"cell{k}.size"][j]],
                        "cell": k,
                    }
                    for k in range(9)
                    if picks[f"cell{k}.shape"][j] != 0
                ]
                labels.append(
                    {
                        "objects": objects,
                        "background": {
                            "colour": scenes.COLOUR_NAMES[picks["background_colour"][j]],
                            "texture": scenes.TEXTURES[picks["texture"][j]],
                        },
                    }
                )
        return labels, torch.cat(feats)
