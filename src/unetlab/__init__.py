"""unetlab: measure, accelerate and train around the UNet inside diffusion models."""

from . import (
    analysis,
    video,
)
from .accel.anchor_attention import anchor_attention
from .accel.block_skip import block_skip
from .accel.branch_cache import branch_cache
from .accel.clockwork import clockwork
from .accel.encoder_propagation import encoder_propagation
from .accel.guidance_reuse import GuidanceReuseConfig, guidance_reuse
from .errors import StackingError, UnsupportedError
from .loading import load
from .recipes import accelerate
from .unet import anatomy, decode, encode
from .version import __version__

__all__ = [
    "__version__",
    "accelerate",
    "analysis",
    "anatomy",
    "anchor_attention",
    "block_skip",
    "branch_cache",
    "clockwork",
    "decode",
    "encode",
    "encoder_propagation",
    "GuidanceReuseConfig",
    "StackingError",
    "UnsupportedError",
    "guidance_reuse",
    "load",
    "video",
]
