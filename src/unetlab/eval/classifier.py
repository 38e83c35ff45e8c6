"""Small evaluation CNNs (digit class; shape, colour, position and background of shapes) shipped with unetlab."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from ..data import DigitsDataset, ShapesDataset
from ..data import shapes as shapes_data

CLASSIFIERS = ("digits", "shapes")
HEADS = {"digits": {"digit": 10}, "shapes": {k: len(v) for k, v in shapes_data.ATTRIBUTES.items()}}
INPUTS = {"digits": (1, 16), "shapes": (3, 24)}


class Classifier(ModelMixin, ConfigMixin):
    """conv-conv-pool x2, conv, flatten (keeps position), 128-d feature layer, one linear head per attribute."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        sample_size: int = 16,
        outputs: dict | None = None,
        width: int = 32,
        feature_dim: int = 128,
    ):
        super().__init__()
        outputs = outputs or {"digit": 10}
        w = width

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]

        self.body = nn.Sequential(
            *block(in_channels, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 2 * w),
            nn.Flatten(),
            nn.Linear(2 * w * (sample_size // 4) ** 2, feature_dim),
            nn.SiLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, n) for name, n in outputs.items()})

    def check_input(self, images: torch.Tensor) -> None:
        shape = (self.config.in_channels, self.config.sample_size, self.config.sample_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise ValueError(
                f"images: shape {tuple(images.shape)} is not (N, {', '.join(map(str, shape))}) float in [0, 1]"
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate (feature_dim) activations of images (N, C, S, S) in [0, 1]."""
        self.check_input(images)
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(images)
        return {name: head(h) for name, head in self.heads.items()}


def build_classifier(name: str) -> Classifier:
    """A freshly initialised classifier for data set `name` ("digits" or "shapes")."""
    if name not in CLASSIFIERS:
        raise ValueError(f"classifier: {name!r} is not one of {', '.join(CLASSIFIERS)}")
    channels, size = INPUTS[name]
    return Classifier(in_channels=channels, sample_size=size, outputs=HEADS[name])


def weights_dir(name: str) -> Path:
    from ..models.registry import weights_path

    return weights_path(f"classifier-{name}")


_CACHE: dict[str, Classifier] = {}


def load_classifier(name: str) -> Classifier:
    """The shipped evaluation classifier of `name` ("digits" or "shapes"), in eval mode (cached)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"model_name: {name!r} is not one of {', '.join(CLASSIFIERS)}")
    if name not in _CACHE:
        path = weights_dir(name)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"classifier: no shipped weights for {name!r} in {path}; train them with "
                f"`unetlab eval classifier {name} --out {path}`"
            )
        _CACHE[name] = Classifier.from_pretrained(path).eval()
    return _CACHE[name]


def heldout_data(name: str, n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Held-out real images and targets: the digits test split, or `n` shapes of the held-out combinations."""
    if name not in CLASSIFIERS:
        raise ValueError(f"model_name: {name!r} is not one of {', '.join(CLASSIFIERS)}")
    if name == "digits":
        ds = DigitsDataset("test", 16)
        return ds.images, {"digit": ds.labels}
    batch = ShapesDataset("heldout", 24, length=n, seed=seed)[torch.arange(n)]
    keys = list(build_classifier("shapes").config.outputs)
    return batch["images"], {k: batch["attributes"][:, i] for i, k in enumerate(keys)}
