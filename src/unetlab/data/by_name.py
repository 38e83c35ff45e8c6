"""The data sets the command line names: "digits", "shapes" or a folder of the user's images."""

from __future__ import annotations

from pathlib import Path

from .digits import DigitsDataset
from .folder import FolderDataset
from .shapes import ShapesDataset


def dataset(name: str, split: str, size: int, seed: int = 0):
    """The `split` of data set `name` at `size` pixels; an image folder has no split and is used whole."""
    if name == "digits":
        return DigitsDataset(split, size)
    if name == "shapes":
        return ShapesDataset(split, size, seed=seed)
    if Path(name).exists() or "/" in name or "\\" in name:
        return FolderDataset(name, size)
    raise ValueError(f"data: {name!r} is not digits, shapes or an existing image folder")
