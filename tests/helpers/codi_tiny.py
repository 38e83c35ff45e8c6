"""Tiny teachers and CoDi tasks shared by the CoDi tests."""

import torch
from diffusers import DDIMPipeline, DDPMScheduler, UNet2DModel

from unetlab.codi import CoDiAdapter, CoDiTask, CoDiTaskConfig
from unetlab.testing import tiny_unet


class TinyDigits:
    def __init__(self, n=12, size=8):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, size, size, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        return {"images": self.images[idx]}


def tiny_teacher(size=8):
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
        attention_head_dim=4,
    )
    return DDIMPipeline(unet=unet.eval(), scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"))


def tiny_task(variant="pe-codi", task="sr4", **loss):
    from unetlab.codi import CoDiLossConfig

    cfg = CoDiTaskConfig(task=task, variant=variant, loss=CoDiLossConfig(grid_size=5, **loss), num_samples=2, seed=3)
    return CoDiTask(tiny_teacher(), TinyDigits(), cfg)


def adapter_for(unet, channels=2, size=None, seed=0):
    size = size or unet.config.sample_size
    return CoDiAdapter.from_unet(unet, channels, size, torch.Generator().manual_seed(seed))


__all__ = ["TinyDigits", "adapter_for", "tiny_task", "tiny_teacher", "tiny_unet"]
