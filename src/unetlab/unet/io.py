"""Load a UNet from a config JSON, a saved model directory, or a saved pipeline directory."""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import UNet2DConditionModel, UNet2DModel

from .support import UnsupportedUNetError

_CLASSES = {c.__name__: c for c in (UNet2DModel, UNet2DConditionModel)}


def load_unet(path: str | Path):
    """A UNet from `config.json` (random weights), a `save_pretrained` UNet folder, or a pipeline folder."""
    path = Path(path)
    if path.is_dir() and (path / "unet").is_dir():
        path = path / "unet"
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise FileNotFoundError(f"unet: {path} is neither a config JSON nor a folder with config.json")
    config = json.loads(config_file.read_text())
    name = config.get("_class_name")
    if name not in _CLASSES:
        raise UnsupportedUNetError(f"unet: _class_name {name!r} in {config_file} is not one of {sorted(_CLASSES)}")
    cls = _CLASSES[name]
    has_weights = path.is_dir() and any(path.glob("diffusion_pytorch_model*.safetensors"))
    return cls.from_pretrained(path) if has_weights else cls.from_config(config)
