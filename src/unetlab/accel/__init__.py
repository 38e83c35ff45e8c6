"""Training-free accelerators; each is `unetlab.<name>(pipe_or_unet, **config) -> handle` (see DESIGN.md)."""

from .encoder_propagation import EncoderPropagation, encoder_propagation
from .branch_cache import BranchCacheConfig, branch_cache
from .clockwork import ClockworkConfig, clockwork
from .peers import UnsupportedPeerError
from .block_skip import BlockSkipPlan, SkipWindow, block_skip  # noqa: E402

__all__ = ["EncoderPropagation", "encoder_propagation", "BranchCacheConfig", "branch_cache", "ClockworkConfig",
           "clockwork", "UnsupportedPeerError", "BlockSkipPlan", "SkipWindow", "block_skip"]
