"""Build the training task of a `unetlab train` method from a data argument."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import DigitsDataset, FolderDataset, ShapesDataset
from .seeding import seeded
from .target import training_scheduler

METHODS = ("ddpm", "t2i")


def make_task(method: str, data: str, size: int | None = None, seed: int = 0, prediction_type: str = "epsilon"):
    """The task for `method` ("ddpm" or "t2i") on `data` ("digits", "shapes" or an image folder), whose UNet
    predicts `prediction_type` ("epsilon" or "v_prediction")."""
    if size is not None and (size < 4 or size % 4):
        raise ValueError(f"size: {size} does not fit the 3-level UNet; expected a multiple of 4 (e.g. 16, 24, 32)")
    scheduler = training_scheduler(prediction_type)
    if method == "ddpm":
        from ..models.configs import digits_unet
        from .ddpm import DDPMTask

        if data == "digits":
            dataset = DigitsDataset("train", 16 if size is None else size)
        elif data == "shapes":
            dataset = ShapesDataset("train", 24 if size is None else size, seed=seed)
        elif Path(data).exists() or "/" in data or "\\" in data:
            dataset = FolderDataset(data, 16 if size is None else size)
        else:
            raise ValueError(f"data: {data!r} is not digits, shapes or an existing image folder")
        first = dataset[torch.arange(1)]["images"]
        with seeded(seed):
            unet = digits_unet(first.shape[-1], first.shape[1])
        return DDPMTask(unet, dataset, scheduler=scheduler)
    if method == "t2i":
        if data != "shapes":
            raise ValueError(f"data: t2i trains on captioned data; {data!r} is not 'shapes'")
        from .t2i import make_shapes_task

        return make_shapes_task(24 if size is None else size, seed=seed, prediction_type=prediction_type)
    raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
