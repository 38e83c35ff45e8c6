"""unetlab: measure, accelerate and train around the UNet inside diffusion models."""

__version__ = "0.1.0"

from .unet import anatomy, decode, encode  # noqa: E402
from .accel.block_skip import block_skip  # noqa: E402
from . import analysis  # noqa: E402
from .accel.branch_cache import branch_cache  # noqa: E402
from .accel.clockwork import clockwork  # noqa: E402
from .accel.encoder_propagation import encoder_propagation  # noqa: E402
from .accel.guidance_reuse import GuidanceReuseConfig, guidance_reuse  # noqa: E402
from .models import load  # noqa: E402
from .accel.anchor_attention import anchor_attention  # noqa: E402
from . import video  # noqa: E402
from .recipes import accelerate  # noqa: E402

__all__ = ["__version__", "accelerate", "analysis", "anatomy", "anchor_attention", "block_skip", "branch_cache", "clockwork", "decode", "encode", "encoder_propagation", "GuidanceReuseConfig", "guidance_reuse", "load", "video"]
