"""Recipes shipped with the package: `unetlab.accelerate(pipe, "fast")` without tuning; `as_recipe`, a recipe from
any of the forms `accelerate` takes.

Each family has a file `presets/<family>.json` holding named recipes ("fast", "balanced"). A bare name picks the
family from the UNet's architecture (`family(unet)`):

- "digits", "shapes": the UNet's config equals the shipped model's (class, channels, block types, sample size,
  channels in and out, cross-attention width) — the recipes were made by `unetlab tune` on those models;
- "sd15": a `UNet2DConditionModel` with Stable Diffusion 1.x/2.x's block types and no added embedding;
- "sdxl": SDXL's block types with the "text_time" added embedding.

"family:name" ("sd15:fast") picks a family explicitly. The SD-1.5 recipes were tuned on `mini-sd` (SD-1.5's UNet
topology, trained here; not on Stable Diffusion itself); the SDXL ones are speed-only, their quality untested
(`tuned_on` says so).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from .recipe import Recipe

FAMILIES = ("digits", "shapes", "sd15", "sdxl")
_ARCH = (
    "block_out_channels",
    "down_block_types",
    "up_block_types",
    "sample_size",
    "in_channels",
    "out_channels",
    "cross_attention_dim",
    "layers_per_block",
)
SD15_BLOCKS = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SDXL_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")


def presets_dir() -> Path:
    return Path(str(resources.files("unetlab.recipes").joinpath("presets")))


def _arch(config) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(config).items() if k in _ARCH}


def family(unet) -> str | None:
    """The preset family whose recipes fit `unet` (see the module docstring), or None."""
    from ..models.registry import weights_path

    name = type(unet).__name__
    for shipped in ("digits", "shapes"):
        path = weights_path(shipped) / "unet" / "config.json"
        if path.is_file():
            cfg = json.loads(path.read_text())
            if cfg.get("_class_name") == name and _arch(cfg) == _arch(unet.config):
                return shipped
    if name != "UNet2DConditionModel":
        return None
    blocks, added = tuple(unet.config.down_block_types), unet.config.addition_embed_type
    if blocks == SD15_BLOCKS and added is None:
        return "sd15"
    if blocks == SDXL_BLOCKS and added == "text_time":
        return "sdxl"
    return None


def names(fam: str) -> list[str]:
    return sorted(json.loads((presets_dir() / f"{fam}.json").read_text()))


def preset(name: str, unet=None) -> Recipe:
    """The shipped recipe `name` ("fast", "balanced") for `unet`'s family, or "family:name"."""
    explicit, _, short = name.rpartition(":")
    if explicit and explicit not in FAMILIES:
        raise ValueError(f"recipe: preset family {explicit!r} is not one of {', '.join(FAMILIES)}")
    fam = explicit or (family(unet) if unet is not None else None)
    if fam is None:
        raise ValueError(
            f"recipe: no shipped preset fits this UNet (presets exist for {', '.join(FAMILIES)}: "
            f"the shipped models and SD-1.5/SDXL-shaped UNets); name one as 'sd15:{name}', give a "
            "recipe JSON, or make one with `unetlab tune`"
        )
    table = json.loads((presets_dir() / f"{fam}.json").read_text())
    if short not in table:
        raise ValueError(
            f"recipe: {name!r} is neither a JSON file nor a preset; presets for {fam}: {', '.join(sorted(table))}"
        )
    return Recipe.from_dict(table[short])


def as_recipe(source, unet=None) -> Recipe:
    """A `Recipe` from a recipe, its dict, a JSON path, or a preset name (`presets.PRESETS`, picked for `unet`)."""
    if isinstance(source, Recipe):
        return source
    if isinstance(source, dict):
        return Recipe.from_dict(source)
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and (source.endswith(".json") or Path(source).is_file())
    ):
        return Recipe.load(source)
    if isinstance(source, str):
        return preset(source, unet)
    raise TypeError(f"recipe: expected a Recipe, dict, JSON path or preset name, got {type(source).__name__}")
