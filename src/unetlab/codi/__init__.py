"""CoDi and PE-CoDi (Mei et al., CVPR 2024): conditional diffusion distillation of an unconditional or text-to-image
UNet through an adapter, to 1-4 sampling steps; and the plainly fine-tuned adapter (ControlNet) baseline."""

from .adapter import AdaptedUNet, CoDiAdapter, adapted_unet
from .degrade import TASKS, condition_consistency, degrade, heldout_conditions
from .loss import CoDiLossConfig, codi_loss, diffusion_loss
from .pipeline import CoDiPipeline
from .task import VARIANTS, CoDiTask, CoDiTaskConfig
from .text_pipeline import TextCoDiPipeline
from .text_task import TextCoDiTask

__all__ = [
    "TASKS",
    "VARIANTS",
    "AdaptedUNet",
    "CoDiAdapter",
    "CoDiLossConfig",
    "CoDiPipeline",
    "CoDiTask",
    "CoDiTaskConfig",
    "TextCoDiPipeline",
    "TextCoDiTask",
    "adapted_unet",
    "codi_loss",
    "condition_consistency",
    "degrade",
    "diffusion_loss",
    "heldout_conditions",
]
