"""Anatomy of diffusers UNets and the exact split forward (encode / decode)."""

from .anatomy import Anatomy, Part, anatomy
from .flops import count_flops
from .inputs import example_inputs, sample_size_of
from .io import load_unet
from .split import EncoderState, decode, encode
from .support import UnsupportedUNetError, check_supported

__all__ = [
    "Anatomy",
    "EncoderState",
    "Part",
    "UnsupportedUNetError",
    "anatomy",
    "check_supported",
    "count_flops",
    "decode",
    "encode",
    "example_inputs",
    "load_unet",
    "sample_size_of",
]
