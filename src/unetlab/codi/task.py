"""CoDi, PE-CoDi and the ControlNet baseline as tasks of unetlab's training loop (`unetlab.train.train`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel

from ..train.draws import Draws
from .adapter import AdaptedUNet, CoDiAdapter, adapted_unet
from .consistency import timestep_grid
from .degrade import TASKS, condition_shape, degrade, drawn_box_masks
from .loss import CoDiLossConfig, codi_loss, diffusion_loss
from .pipeline import CoDiPipeline

VARIANTS = ("codi", "pe-codi", "controlnet")
SAMPLE_STEPS = 4  # consistency steps of the checkpoint sample grids (at most the grid's N)


@dataclass
class CoDiTaskConfig:
    """`variant`: "codi" trains adapter and UNet (one `AdaptedUNet` module, "student"), "pe-codi" the adapter only
    (teacher frozen), "controlnet" the adapter only with the plain diffusion loss (the baseline, sampled with DDIM);
    `loss` for the two CoDi ones."""

    task: str = "sr4"
    variant: str = "codi"
    loss: CoDiLossConfig = field(default_factory=CoDiLossConfig)
    num_samples: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task: {self.task!r} is not one of {', '.join(TASKS)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: {self.variant!r} is not one of {', '.join(VARIANTS)}")


def check_teacher(teacher_pipe, channels: int, loss: CoDiLossConfig) -> None:
    """One-line errors for a teacher CoDi cannot adapt to images of `channels` channels with `loss`'s grid."""
    unet = getattr(teacher_pipe, "unet", None)
    if isinstance(teacher_pipe, CoDiPipeline):
        raise ValueError(
            "teacher: a CoDiPipeline is already image-conditioned; give the unconditional pipeline it was adapted "
            "from (e.g. digits)"
        )
    if not isinstance(unet, UNet2DModel) or unet.config.class_embed_type or unet.config.num_class_embeds:
        kind = "a class-conditional UNet2DModel" if isinstance(unet, UNet2DModel) else f"a {type(unet).__name__}"
        raise ValueError(
            f"teacher: {type(teacher_pipe).__name__} holds {kind}; CoDi adapts an unconditional UNet2DModel "
            "pipeline (digits, or a `unetlab train ddpm` run on the same data) or a latent text-to-image one (mini-sd)"
        )
    if unet.config.in_channels != channels:
        raise ValueError(
            f"teacher: its UNet takes {unet.config.in_channels}-channel images, the data has {channels} channel(s); "
            "give a teacher trained on the same data"
        )
    steps = teacher_pipe.scheduler.config.num_train_timesteps
    if loss.t_max >= steps:
        raise ValueError(
            f"t_max: {loss.t_max} is not a training timestep of the teacher's {steps}; expected 1 to {steps - 1}"
        )
    timestep_grid(loss.grid_size, loss.t_max)


def _bound(model, cond: dict):
    """`model` as the loss's (z, t, condition) callable, with the UNet's other inputs (`cond`) bound."""
    if not cond:
        return model
    return lambda z, t, c: model(z, t, c, **cond)


class CoDiTask:
    """Adapts the teacher pipeline's UNet to `cfg.task` on `dataset` (`ds[idx]["images"]` in [0, 1]); conditions
    are degraded on the fly (inpainting boxes from the step's draws). The EMA weights are the target."""

    uses_ema = True

    def __init__(self, teacher_pipe, dataset, cfg: CoDiTaskConfig):
        self._check(teacher_pipe, dataset, cfg)
        self.cfg, self.dataset = cfg, dataset
        self.teacher = teacher_pipe.unet.eval().requires_grad_(False)
        self.scheduler = DDIMScheduler.from_config(teacher_pipe.scheduler.config)
        self.prediction_type = self.scheduler.config.prediction_type
        self.alphas_cumprod = self.scheduler.alphas_cumprod
        cond_channels, cond_size = condition_shape(cfg.task, *self._image_shape(teacher_pipe))
        self.adapter = CoDiAdapter.from_unet(
            self.teacher, cond_channels, cond_size, torch.Generator().manual_seed(cfg.seed)
        )
        if cfg.variant == "codi":
            self._modules = {"student": AdaptedUNet(self.adapter, copy.deepcopy(self.teacher).requires_grad_(True))}
        else:
            self._modules = {"adapter": self.adapter}
        self.targets = {name: copy.deepcopy(m).eval().requires_grad_(False) for name, m in self._modules.items()}
        images = dataset[torch.arange(cfg.num_samples)]["images"]
        self.sample_conditions = degrade(cfg.task, images, torch.Generator().manual_seed(cfg.seed))

    def _check(self, teacher_pipe, dataset, cfg: CoDiTaskConfig) -> None:
        check_teacher(teacher_pipe, int(dataset[torch.arange(1)]["images"].shape[1]), cfg.loss)

    def _image_shape(self, teacher_pipe) -> tuple[int, int]:
        """(channels, size) of the images the conditions are made from: the teacher's own samples."""
        return self.teacher.config.in_channels, self.teacher.config.sample_size

    def modules(self) -> dict:
        return dict(self._modules)

    def to(self, device) -> None:
        self.teacher.to(device)
        for m in self.targets.values():
            m.to(device)

    def _student(self, models: dict):
        """(z, t, c) -> the adapted model's output from the trained modules: the "student" module itself (its
        forward, which a DistributedDataParallel wrapper synchronises), or the adapter on the frozen teacher."""
        if "student" in models:
            return models["student"]
        return lambda z, t, c, **cond: adapted_unet(self.teacher, models["adapter"], z, t, c, **cond)

    def _parts(self, models: dict) -> tuple:
        """(UNet, adapter) of unwrapped trained modules."""
        if "student" in models:
            return models["student"].unet, models["student"].adapter
        return self.teacher, models["adapter"]

    def _inputs(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(x_0 in [-1, 1], the degraded condition, the UNet's other inputs) of a batch; inpainting boxes from
        the step's draws."""
        images = batch["images"]
        masks = drawn_box_masks(len(images), images.shape[-1], draws) if self.cfg.task == "inpaint" else None
        return images * 2 - 1, degrade(self.cfg.task, images, masks=masks), {}

    def loss(self, models: dict, batch: dict, generator: torch.Generator, emas: dict) -> torch.Tensor:
        # every draw (boxes, t, noise) through the step's draws: several processes compute one process's gradients
        draws = Draws(batch, generator)
        x0, condition, cond = self._inputs(batch, draws)
        online = _bound(self._student(models), cond)
        if self.cfg.variant == "controlnet":
            return diffusion_loss(online, x0, condition, draws, self.alphas_cumprod, self.prediction_type)
        for name, ema in emas.items():
            ema.copy_to(self.targets[name])
        target = _bound(self._student(self.targets), cond)

        def teacher(z, t, c):
            return self.teacher(z, t, **cond).sample

        terms = codi_loss(
            online, target, teacher, x0, condition, draws, self.alphas_cumprod, self.cfg.loss, self.prediction_type
        )
        return terms["total"]

    def pipeline(self, models: dict) -> CoDiPipeline:
        sampler = "ddim" if self.cfg.variant == "controlnet" else "consistency"
        unet, adapter = self._parts(models)
        return CoDiPipeline(
            unet=unet,
            adapter=adapter,
            scheduler=DDIMScheduler.from_config(self.scheduler.config),
            sampler=sampler,
            grid_size=self.cfg.loss.grid_size,
            t_max=self.cfg.loss.t_max,
        )

    def sample(self, models: dict, generator: torch.Generator) -> torch.Tensor:
        pipe = self.pipeline(models)
        pipe.set_progress_bar_config(disable=True)
        steps = 20 if self.cfg.variant == "controlnet" else min(SAMPLE_STEPS, self.cfg.loss.grid_size)
        device = next(self._parts(models)[1].parameters()).device
        inputs = self._sample_inputs()
        inputs["image"] = inputs["image"].to(device)
        return pipe(**inputs, num_inference_steps=steps, generator=generator, output_type="pt").images.cpu()

    def _sample_inputs(self) -> dict:
        """The pipeline's inputs for the checkpoint sample grids."""
        return {"image": self.sample_conditions}

    def save(self, models: dict, directory: Path) -> None:
        self.pipeline(models).save_pretrained(directory)
