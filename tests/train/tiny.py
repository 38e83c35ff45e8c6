"""A tiny DDPM task and loop settings shared by the training tests."""

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from unetlab import checkpoint as ckpt
from unetlab.train import TrainConfig
from unetlab.train.ddpm import DDPMTask


class TinyData:
    def __init__(self, n=24):
        self.images = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        return {"images": self.images[idx]}


def tiny_task(fail_at_loss=None, fail_in_save=False):
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    task = DDPMTask(unet, TinyData(), num_samples=4, sample_steps=2)
    calls = {"loss": 0}
    loss = task.loss

    def counting_loss(models, batch, generator):
        calls["loss"] += 1
        if calls["loss"] == fail_at_loss:
            raise KeyboardInterrupt("killed")
        return loss(models, batch, generator)

    task.loss = counting_loss
    if fail_in_save:

        def broken_save(models, directory):
            directory.mkdir()
            (directory / "partial").write_text("x")
            raise KeyboardInterrupt("killed while saving")

        task.save = broken_save
    return task


def cfg(out, **kw):
    base = {
        "out": str(out),
        "steps": 6,
        "batch_size": 5,
        "lr": 1e-2,
        "warmup": 2,
        "checkpoint_every": 3,
        "progress": False,
        "seed": 1,
    }
    base.update(kw)
    return TrainConfig(**base)


def final_weights(out):
    last = ckpt.latest(out)
    return load_file(last / "unet.safetensors"), load_file(last / "ema_unet.safetensors")
