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


class SceneJudge(ModelMixin, ConfigMixin):
    """Four conv stages (64 -> 8 px), pooled to the 3x3 grid, flattened (keeps which cell), a `feature_dim`
    feature layer (the Fréchet distance's features) and one linear head per cell attribute and background one."""

    @register_to_config
    def __init__(self, width: int = 32, feature_dim: int = 256):
        super().__init__()
        w = width

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]

        self.body = nn.Sequential(
            *block(3, w), *block(w, w), nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 3 * w), *block(3 * w, 3 * w), nn.MaxPool2d(2), *block(3 * w, 4 * w),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(4 * w * 9, feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({name.replace(".", "_"): nn.Linear(feature_dim, len(classes))
                                    for name, classes in head_classes().items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The (N, feature_dim) features of images (N, 3, 64, 64) in [0, 1]."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, scenes.SIZE, scenes.SIZE):
            raise ValueError(f"images: shape {tuple(images.shape)} is not (N, 3, 64, 64) float in [0, 1]")
        return self.body(images.to(self.dtype) * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(images)
        return {name: self.heads[name.replace(".", "_")](h) for name in head_classes()}

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 256) -> tuple[list[dict], torch.Tensor]:
        """What the judge sees in each image, as scene labels ({"objects": [...], "background": {...}}, objects
        in cell order), and the images' features."""
        labels, feats = [], []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size].to(self.device)
            h = self.features(chunk)
            feats.append(h.float().cpu())
            picks = {name: self.heads[name.replace(".", "_")](h).argmax(1).tolist() for name in head_classes()}
            for j in range(len(chunk)):
                objects = [{"shape": CELL_HEADS["shape"][picks[f"cell{k}.shape"][j]],
                            "colour": scenes.COLOUR_NAMES[picks[f"cell{k}.colour"][j]],
                            "size": scenes.SIZES[picks[f"cell{k}.size"][j]], "cell": k}
                           for k in range(9) if picks[f"cell{k}.shape"][j] != 0]
                labels.append({"objects": objects,
                               "background": {"colour": scenes.COLOUR_NAMES[picks["background_colour"][j]],
                                              "texture": scenes.TEXTURES[picks["texture"][j]]}})
        return labels, torch.cat(feats)
