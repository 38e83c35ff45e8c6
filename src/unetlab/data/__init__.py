"""Deterministic data sets: bundled digits, procedural captioned shapes, and the user's image folders."""

from .by_name import dataset
from .digits import DigitsDataset, load_digits
from .folder import FolderDataset, load_folder
from .shapes import ShapesDataset, caption, heldout_captions, parse_caption

__all__ = [
    "DigitsDataset",
    "FolderDataset",
    "ShapesDataset",
    "caption",
    "dataset",
    "heldout_captions",
    "load_digits",
    "load_folder",
    "parse_caption",
]
