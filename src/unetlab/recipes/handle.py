"""`unetlab.accelerate(pipe, recipe)`: a whole recipe applied as one handle on the base protocol.

The handle swaps in the recipe's scheduler when the pipeline's is of another class or has another value of a field
the recipe's solver sets (built from the pipeline's scheduler config with those fields set, so its betas and
timestep spacing are kept), then applies the accelerators in the recipe's
order; `.remove()` removes them in reverse order and puts the original scheduler object back. A recipe tuned on
another model than the pipeline's (known when the pipeline was loaded from a shipped name, a folder or a hub id)
is applied with one warning naming `tuned_on.model`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..accel import stacking
from ..accel.config import apply
from ..accel.handle import Handle, uncompiled
from ..errors import StackingError
from ..patching import claims, resolve
from .presets import as_recipe
from .recipe import Recipe
from .solver import SchedulerSwap


class RecipeHandle(Handle):
    """The applied recipe: a context manager; `.remove()` restores the pipeline (accelerators, scheduler)."""

    kind = "recipe"

    def __init__(self, pipe, recipe: Recipe):
        unet = uncompiled(resolve(pipe)[1])[0]  # a torch.compile'd UNet: the accelerators claim the model inside
        on = sorted(claims(unet) & set(stacking.ACCELERATORS))
        if self.kind in claims(unet):
            raise StackingError(
                f"recipe: already applied to this {type(unet).__name__}; call .remove() on the first handle"
            )
        if on:
            raise StackingError(
                f"recipe: {', '.join(on)} is already applied to this UNet; remove it first (a recipe "
                "brings its own accelerators)"
            )
        super().__init__(unet, recipe)
        self.pipe, self.handles = pipe, []
        try:
            if not recipe.scheduler.matches(pipe.scheduler):
                self._add(SchedulerSwap(pipe, recipe.scheduler))
            for cfg in recipe.accelerators:
                self.handles.append(self._add(apply(pipe, cfg)))
        except BaseException:
            self.remove()
            raise

    @property
    def recipe(self) -> Recipe:
        return self.config

    @property
    def num_inference_steps(self) -> int:
        """What to pass to `pipe(..., num_inference_steps=...)`."""
        return self.config.num_inference_steps


def _names(source) -> set[str]:
    """What a model source (a shipped name, a folder, a hub id) may be called: itself, its resolved folder, and the
    shipped name whose weights that folder holds."""
    from ..models.registry import SHIPPED, weights_path

    source = os.fspath(source)
    names = {source}
    if Path(source).exists():
        names.add(str(Path(source).resolve()))
    names |= {name for name in SHIPPED if str(weights_path(name).resolve()) in names}
    return names


def check_provenance(pipe, recipe: Recipe) -> None:
    """Warn once when the recipe was tuned on another model than the one `pipe` was loaded from."""
    tuned, source = recipe.tuned_on.get("model"), getattr(pipe, "name_or_path", None)
    if not isinstance(tuned, (str, os.PathLike)) or not isinstance(source, (str, os.PathLike)) or not str(source):
        return
    if not _names(tuned) & _names(source):
        warnings.warn(
            f"recipe: tuned_on.model is {os.fspath(tuned)!r}, but this pipeline was loaded from "
            f"{os.fspath(source)!r}; its speed and quality were measured on the other model (run `unetlab "
            "tune` on this one)",
            UserWarning,
            stacklevel=3,
        )


def accelerate(pipe, recipe) -> RecipeHandle:
    """Apply a recipe (a `Recipe`, its dict, a JSON path or a preset name such as "fast") to a diffusers pipeline;
    returns one handle (context manager, `.remove()`); call `pipe(...,
    num_inference_steps=handle.num_inference_steps)`."""
    pipe_, unet = resolve(pipe)
    if pipe_ is None:
        raise TypeError(
            "pipe: expected a diffusers pipeline (a recipe sets its scheduler and step count), got a bare UNet"
        )
    recipe = as_recipe(recipe, uncompiled(unet)[0])
    check_provenance(pipe, recipe)
    return RecipeHandle(pipe, recipe)
