"""The small models unetlab ships (digits DDPM, shapes text-to-image), their pipeline, and `load`."""

from .load import load
from .pipeline import ShapesPipeline
from .text import TextEncoder, WordTokenizer

__all__ = ["ShapesPipeline", "TextEncoder", "WordTokenizer", "load"]
