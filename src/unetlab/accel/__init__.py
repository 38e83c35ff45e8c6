"""Training-free accelerators; each is `unetlab.<name>(pipe_or_unet, **config) -> handle` (docs/accelerators.md),
built on `handle.Accelerator`; their configs save to JSON and `apply(target, load_config(path))` applies one."""

from .anchor_attention import AnchorAttentionConfig, anchor_attention
from .block_skip import BlockSkipConfig, BlockSkipPlan, SkipWindow, block_skip
from .branch_cache import BranchCacheConfig, branch_cache
from .clockwork import ClockworkConfig, clockwork
from .clockwork_adaptor import ClockworkAdaptor
from .config import AccelConfig, apply
from .encoder_propagation import EncoderPropagation, EncoderPropagationConfig, encoder_propagation
from .guidance_reuse import GuidanceReuseConfig, guidance_reuse
from .peers import DeepCacheConfig, PABConfig, TaylorSeerConfig, TGateConfig, ToMeConfig, UnsupportedPeerError
from .registry import load_config
from .stacking import COMPOSE

__all__ = [
    "AccelConfig",
    "AnchorAttentionConfig",
    "BlockSkipConfig",
    "BlockSkipPlan",
    "BranchCacheConfig",
    "COMPOSE",
    "ClockworkAdaptor",
    "ClockworkConfig",
    "DeepCacheConfig",
    "EncoderPropagation",
    "EncoderPropagationConfig",
    "GuidanceReuseConfig",
    "PABConfig",
    "SkipWindow",
    "TGateConfig",
    "TaylorSeerConfig",
    "ToMeConfig",
    "UnsupportedPeerError",
    "anchor_attention",
    "apply",
    "block_skip",
    "branch_cache",
    "clockwork",
    "encoder_propagation",
    "guidance_reuse",
    "load_config",
]
