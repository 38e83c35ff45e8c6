"""`unetlab.load`: a ready pipeline from a shipped name, a local folder, or a Hugging Face Hub id; above every
pipeline class unetlab ships (`models`, `codi`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DiffusionPipeline

from .codi.pipeline import CoDiPipeline
from .codi.text_pipeline import TextCoDiPipeline
from .models.pipeline import ShapesPipeline
from .models.registry import FLOAT16_STORED, SHIPPED, weights_path

_OURS = {
    "ShapesPipeline": ShapesPipeline,
    "DDIMPipeline": DDIMPipeline,
    "DDPMPipeline": DDIMPipeline,
    "CoDiPipeline": CoDiPipeline,
    "TextCoDiPipeline": TextCoDiPipeline,
}


def _from_folder(path: Path, **kwargs) -> DiffusionPipeline:
    index = path / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"load: {path} has no model_index.json (not a save_pretrained pipeline folder)")
    name = json.loads(index.read_text()).get("_class_name")
    cls = _OURS.get(name, DiffusionPipeline)
    pipe = cls.from_pretrained(path, **kwargs)
    if name in _OURS:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ("org/name"): absolute, relative with ./ or ~, or more than one level deep."""
    return name.startswith((".", "~", "/")) or name.count("/") > 1 or "\\" in name


def check_exists(name: str) -> None:
    """Raise FileNotFoundError when `name` is meant as a local folder (not a shipped name or a Hub id) and is
    missing."""
    if name not in SHIPPED and _looks_local(name) and not Path(name).exists():
        raise FileNotFoundError(f"load: no such folder {name} (and not a shipped name: {', '.join(SHIPPED)})")


def load(name_or_path: str | Path, **kwargs) -> DiffusionPipeline:
    """A ready pipeline (DDIM scheduler; 50 steps by default) for "digits", "shapes", "mini-sd" (a plain
    `StableDiffusionPipeline` with SD-1.5's UNet topology), a shipped CoDi model
    ("digits-sr4-codi", "digits-sr4-pe-codi", "digits-inpaint-codi", "digits-inpaint-pe-codi"; float32), a local
    pipeline folder, or a Hugging Face Hub id; `kwargs` go to `from_pretrained` (e.g. torch_dtype)."""
    name = str(name_or_path)
    if name in FLOAT16_STORED and "torch_dtype" not in kwargs:  # stored as float16 to stay small; CPU wants float32
        kwargs.setdefault("dtype", torch.float32)
    if name in SHIPPED:
        path = weights_path(name)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"load: the shipped {name!r} weights are missing from {path}; reinstall unetlab")
        pipe = _from_folder(path, **kwargs)
    elif Path(name).exists():
        pipe = _from_folder(Path(name), **kwargs)
    elif _looks_local(name):
        check_exists(name)
    else:
        try:
            pipe = DiffusionPipeline.from_pretrained(name, **kwargs)
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(
                f"load: {name!r} is not a shipped name ({', '.join(SHIPPED)}) or a local folder, "
                f"and the Hugging Face Hub could not provide it ({type(err).__name__}: "
                f"{reason[:160]})"
            ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe
