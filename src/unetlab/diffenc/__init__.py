"""DiffEnc (Nielsen et al. 2024): VDM with a learned time-dependent encoder, in PyTorch."""

from .encoder import NonTrainableEncoder, TrainableEncoder
from .model import DiffEnc

__all__ = ["DiffEnc", "NonTrainableEncoder", "TrainableEncoder"]
