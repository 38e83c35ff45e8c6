"""Build the training task of a `unetlab train` method from a data argument."""

from __future__ import annotations

import torch

from ..data import dataset as data_by_name
from ..seeding import seeded
from .target import training_scheduler

METHODS = ("ddpm", "t2i", "autoencoder", "judge")
DDPM_SIZES = {"digits": 16, "shapes": 24}  # ddpm's image size when none is given (an image folder: 16)


def make_task(
    method: str,
    data: str,
    size: int | None = None,
    seed: int = 0,
    prediction_type: str = "epsilon",
    vae: str | None = None,
    block_channels: tuple[int, ...] | None = None,
    decoder_only: bool = False,
):
    """The task for `method` ("ddpm", "t2i" or "autoencoder") on `data` ("digits", "shapes", "scenes" or an image
    folder), whose UNet predicts `prediction_type` ("epsilon" or "v_prediction"); t2i on scenes is `mini-sd`'s
    latent model on the autoencoder folder `vae`, its UNet at `block_channels`; `decoder_only`: the autoencoder's
    decoder alone is trained."""
    if data == "scenes" and method == "t2i":
        from ..models.configs import MINI_SD_CHANNELS
        from .latent_t2i import make_scenes_task

        if vae is None:
            raise ValueError(
                "vae: t2i on scenes trains in the latent space of an autoencoder; give --vae FOLDER "
                "(from `unetlab train autoencoder --data scenes`)"
            )
        if prediction_type != "epsilon" or size is not None:
            raise ValueError("prediction-type, size: mini-sd is epsilon-prediction at 64x64 (Stable Diffusion 1.5's)")
        return make_scenes_task(vae, block_channels or MINI_SD_CHANNELS, seed=seed)
    if vae is not None or block_channels is not None:
        raise ValueError("vae, block-channels: only t2i on scenes (mini-sd) takes them")
    if size is not None and (size < 4 or size % 4):
        raise ValueError(f"size: {size} does not fit the 3-level UNet; expected a multiple of 4 (e.g. 16, 24, 32)")
    scheduler = training_scheduler(prediction_type)
    if method == "ddpm":
        from ..models.configs import digits_unet
        from .ddpm import DDPMTask

        dataset = data_by_name(data, "train", DDPM_SIZES.get(data, 16) if size is None else size, seed)
        first = dataset[torch.arange(1)]["images"]
        with seeded(seed):
            unet = digits_unet(first.shape[-1], first.shape[1])
        return DDPMTask(unet, dataset, scheduler=scheduler)
    if method == "t2i":
        if data != "shapes":
            raise ValueError(f"data: t2i trains on captioned data; {data!r} is not 'shapes' or 'scenes'")
        from .t2i import make_shapes_task

        return make_shapes_task(24 if size is None else size, seed=seed, prediction_type=prediction_type)
    if method == "judge":
        if data != "scenes":
            raise ValueError(f"data: judge trains mini-sd's judge on 'scenes', not {data!r}")
        from .judge import JudgeTask

        return JudgeTask(seed=seed)
    if method == "autoencoder":
        if data != "scenes":
            raise ValueError(f"data: autoencoder trains mini-sd's first stage on 'scenes', not {data!r}")
        from ..data.scenes import ScenesDataset, sample
        from ..models.configs import mini_sd_vae
        from .autoencoder import AutoencoderTask

        with seeded(seed):
            vae = mini_sd_vae()
        return AutoencoderTask(
            vae, ScenesDataset("train", seed=seed), sample(256, seed=seed, split="test")[0], decoder_only=decoder_only
        )
    raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
