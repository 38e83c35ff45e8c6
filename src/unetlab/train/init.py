"""Fine-tuning start: each trained module of a task loaded from the same-named component of a saved pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn


def pipeline_folder(source: str | Path) -> Path:
    """The folder of `source`: a shipped model's name ("digits", "shapes") or a `save_pretrained` pipeline folder."""
    from ..models.registry import SHIPPED, weights_path

    path = weights_path(str(source)) if str(source) in SHIPPED else Path(source)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"init_from: {source} is neither a shipped model ({', '.join(SHIPPED)}) nor a "
            "save_pretrained pipeline folder (no model_index.json)"
        )
    return path


def _components(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The modules, a plain container of components (no `from_pretrained`, e.g. CoDi's adapter + UNet) as its
    children."""
    out = {}
    for name, module in modules.items():
        plain = not hasattr(type(module), "from_pretrained") and len(list(module.children())) > 0
        out.update(dict(module.named_children()) if plain else {name: module})
    return out


def init_from(modules: dict[str, nn.Module], source: str | Path) -> None:
    """Load every module of `modules` (of a plain container: each child) in place from component `<source>/<name>`
    (same architecture required)."""
    path = pipeline_folder(source)
    for name, module in _components(modules).items():
        if not (path / name / "config.json").is_file() or not hasattr(type(module), "from_pretrained"):
            raise ValueError(f"init_from: {path} has no {name!r} component that a {type(module).__name__} loads from")
        config = json.loads((path / name / "config.json").read_text())
        saved = config.get("_class_name") or (config.get("architectures") or [None])[0]  # diffusers | transformers
        if saved != type(module).__name__:
            raise ValueError(f"init_from: {path / name} holds a {saved}; the task trains a {type(module).__name__}")
        state, own = type(module).from_pretrained(path / name).state_dict(), module.state_dict()
        differ = sorted(
            k for k in own.keys() | state.keys() if k not in own or k not in state or own[k].shape != state[k].shape
        )
        if differ:
            raise ValueError(
                f"init_from: {path / name} does not fit the task's {name}: {len(differ)} tensors differ "
                f"in name or shape (first: {differ[0]})"
            )
        module.load_state_dict(state)
