"""Where the shipped weights live inside the installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("digits", "shapes")


def weights_path(name: str) -> Path:
    """The folder of shipped weights `name` (e.g. "digits", "shapes", "classifier-digits") in the package."""
    return Path(str(resources.files("unetlab.models").joinpath("weights", name)))
