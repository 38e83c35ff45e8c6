"""The recipe format: a step count, a solver and a stack of accelerator configs, as JSON (`recipe.py`, `solver.py`),
the shipped presets, and `accelerate(pipe, recipe)`; `unetlab.bench.tune` searches for one."""

from .handle import RecipeHandle, accelerate
from .presets import as_recipe
from .recipe import Recipe

__all__ = ["Recipe", "RecipeHandle", "accelerate", "as_recipe"]
