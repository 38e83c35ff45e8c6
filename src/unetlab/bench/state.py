"""The tuner's work folder: everything measured so far, so an interrupted or time-limited run resumes.

`<out>.tune/` next to the recipe file holds `state.json` (the settings it was measured under and, per candidate,
its counted FLOPs and operators, its per-image quality per seed and its timed calls), `reference.safetensors`
(the full-step baseline images per seed), `features/` (per candidate, the judge's features of each seed's image,
from which a set statistic such as the Fréchet distance is computed over any set of seeds), the derived key steps
and the ablation cells. Measurements do not depend on the budget: every metric but LPIPS is measured for every
image, and what a later budget needs and a folder lacks (LPIPS, or a metric added since) is measured then, so
tuning the same model again for another budget reuses them. Files are written atomically; a folder measured under
other settings is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..atomic import write, write_json

IGNORED = ("metrics",)  # settings of older work folders that no longer decide what a folder holds
FIX = "delete it (the folder holds only measurements) or give another --out"


def work_dir(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".tune")


def check_work_dir(out) -> None:
    """A one-line error, before any work, where the work folder next to `out` cannot be used: a file in its place,
    a folder that is not writable, or a state.json that is not a tune state."""
    folder = work_dir(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"--out: {folder} (the work folder next to the recipe) is a file; move it or give another --out"
        )
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out: the work folder {folder} is not writable; give another --out")
    if (folder / "state.json").exists():
        _load(folder / "state.json")


def _load(path: Path) -> dict:
    """The stored state.json; a one-line error naming the file when it is not a tune state."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--out: {path} is not valid JSON ({err}); {FIX}") from None
    except OSError as err:
        raise ValueError(f"--out: {path} cannot be read ({err.strerror}); {FIX}") from None
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), dict):
        raise ValueError(f"--out: {path} is not a tune state (expected an object with settings and candidates); {FIX}")
    return data


class State:
    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = Path(folder), settings
        self.path = self.folder / "state.json"
        data = _load(self.path) if self.path.is_file() else None
        if data is not None:
            old = {k: v for k, v in (data.get("settings") or {}).items() if k not in IGNORED}
            if old != settings:
                diff = next((k for k in settings if old.get(k) != settings[k]), "settings")
                raise ValueError(
                    f"--out: the work folder {self.folder} was measured with {diff}={old.get(diff)!r}, "
                    f"this run has {settings.get(diff)!r}; delete the folder or give another --out"
                )
            data["settings"] = settings
        self.data = data or {"settings": settings, "candidates": {}}
        self.candidates: dict = self.data["candidates"]
        self._features: dict[str, dict[int, torch.Tensor]] = {}

    def entry(self, key: str, name: str, family: str) -> dict:
        return self.candidates.setdefault(
            key, {"name": name, "family": family, "counts": None, "quality": {}, "times": []}
        )

    def save(self) -> None:
        write_json(self.path, self.data)

    def extra(self, name: str):
        return self.data.get(name)

    def set_extra(self, name: str, value) -> None:
        self.data[name] = value
        self.save()

    # the judge's features of a candidate's images, per seed
    def _features_path(self, key: str) -> Path:
        return self.folder / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"

    def features(self, key: str) -> dict[int, torch.Tensor]:
        if key not in self._features:
            self._features[key] = _read(self._features_path(key), "measure the candidate again")
        return self._features[key]

    def add_features(self, key: str, feats: dict[int, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        merged = {**self.features(key), **feats}
        write(self._features_path(key), lambda tmp: save_file({str(k): v.contiguous() for k, v in merged.items()}, tmp))
        self._features[key] = merged

    def rekey(self, old: str, new: str) -> None:
        """Move a candidate's features from an old key's file to its new key's."""
        path = self._features_path(old)
        if path.is_file() and not self._features_path(new).exists():
            os.replace(path, self._features_path(new))
        self._features.pop(old, None)

    # the baseline images, per seed
    def reference(self) -> dict[int, torch.Tensor]:
        return _read(self.folder / "reference.safetensors", "measure the baseline again")

    def save_reference(self, images: dict[int, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        write(
            self.folder / "reference.safetensors",
            lambda tmp: save_file({str(k): v.contiguous() for k, v in images.items()}, tmp),
        )


def _read(path: Path, then: str) -> dict[int, torch.Tensor]:
    """Tensors per seed from a safetensors file ({} where there is none); a one-line error naming a broken one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return {}
    try:
        return {int(k): v for k, v in load_file(path).items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"--out: {path} is not a readable safetensors file ({' '.join(str(err).split())}); delete it to {then}"
        ) from None
