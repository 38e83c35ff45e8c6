"""The small models unetlab ships (digits DDPM, shapes text-to-image): their pipeline, text encoder, configs and
weights (`unetlab.load` is in `loading.py`, above the pipelines it knows)."""

from .pipeline import ShapesPipeline
from .text import TextEncoder, WordTokenizer

__all__ = ["ShapesPipeline", "TextEncoder", "WordTokenizer"]
