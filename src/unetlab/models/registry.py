"""Where the shipped weights live inside the installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CODI_MODELS = ("digits-sr4-codi", "digits-sr4-pe-codi", "digits-inpaint-codi", "digits-inpaint-pe-codi")
SHIPPED = ("digits", "shapes", "mini-sd", *CODI_MODELS)
FLOAT16_STORED = ("mini-sd", *CODI_MODELS)  # stored as float16 to stay small; loaded as float32 unless asked
CLOCKWORK_ADAPTORS = (
    "digits",
    "shapes",
    "mini-sd",
)  # Clockwork adaptors distilled for these models: weights/clockwork-adaptor-<name>


def weights_path(name: str) -> Path:
    """The folder of shipped weights `name` (e.g. "digits", "shapes", "classifier-digits") in the package."""
    return Path(str(resources.files("unetlab.models").joinpath("weights", name)))
