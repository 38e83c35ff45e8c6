"""Recipes (a step count, a scheduler and a stack of accelerator configs, as JSON), `accelerate(pipe, recipe)`,
the shipped presets, and `tune`, the search for the fastest recipe within a quality budget."""

from .handle import RecipeHandle, accelerate
from .recipe import Recipe, as_recipe

__all__ = ["Recipe", "RecipeHandle", "accelerate", "as_recipe"]
