"""The error classes shared across layers (a leaf: it imports nothing).

- `UnsupportedError`: a method, accelerator, solver or UNet cannot run on the given model or pipeline; the one
  exception `unetlab bench` turns into an "unsupported" row (any other fails the bench). Its subclasses keep the
  built-in type they were raised as before (`ValueError`, `TypeError`), so existing handlers still catch them.
- `StackingError`: a patch that cannot be applied on top of what is already on the model (a second handle of one
  kind, an order or pair the stacking table refuses).
Config errors (a field out of range or of the wrong type) are `ValueError`s naming the field.
"""

from __future__ import annotations


class UnsupportedError(Exception):
    """Cannot run on the given model or pipeline; the message says why, in one line."""


class UnsupportedPipelineError(UnsupportedError, TypeError):
    """The pipeline or UNet given lacks what the accelerator needs (conditioning, a pipeline around the UNet)."""


class StackingError(RuntimeError):
    """A patch refused on top of those already applied to the model; the message names both and the way out."""
