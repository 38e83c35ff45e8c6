"""The tuner's work folder: everything measured so far, so an interrupted or time-limited run resumes.

`<out>.tune/` next to the recipe file holds `state.json` (the settings it was measured under and, per candidate,
its counted FLOPs and operators, its per-image quality per seed and its timed calls), `reference.safetensors`
(the full-step baseline images per seed), the derived key steps and the ablation cells. Measurements do not
depend on the budget, so tuning the same model again for another budget reuses them. Files are written
atomically; a folder measured under other settings is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import write, write_json


def work_dir(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".tune")


class State:
    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = Path(folder), settings
        self.path = self.folder / "state.json"
        data = self._load() if self.path.is_file() else None
        if data is not None and data.get("settings") != settings:
            old = data.get("settings", {})
            diff = next((k for k in settings if old.get(k) != settings[k]), "settings")
            raise ValueError(
                f"--out: the work folder {self.folder} was measured with {diff}={old.get(diff)!r}, "
                f"this run has {settings.get(diff)!r}; delete the folder or give another --out"
            )
        self.data = data or {"settings": settings, "candidates": {}}
        self.candidates: dict = self.data["candidates"]

    def _load(self) -> dict:
        """The stored state.json; a one-line error naming the file when it is not a tune state."""
        fix = "delete it (the folder holds only measurements) or give another --out"
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"--out: {self.path} is not valid JSON ({err}); {fix}") from None
        if not isinstance(data, dict) or not isinstance(data.get("candidates"), dict):
            raise ValueError(
                f"--out: {self.path} is not a tune state (expected an object with settings and candidates); {fix}"
            )
        return data

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

    # the baseline images, per seed
    def reference(self) -> dict[int, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.folder / "reference.safetensors"
        if not path.is_file():
            return {}
        try:
            return {int(k): v for k, v in load_file(path).items()}
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(
                f"--out: {path} is not a readable safetensors file ({' '.join(str(err).split())}); "
                "delete it to measure the baseline again"
            ) from None

    def save_reference(self, images: dict[int, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        write(
            self.folder / "reference.safetensors",
            lambda tmp: save_file({str(k): v.contiguous() for k, v in images.items()}, tmp),
        )
