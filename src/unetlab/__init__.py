"""unetlab: measure, accelerate and train around the UNet inside diffusion models."""

__version__ = "0.1.0"

from .unet import anatomy, decode, encode  # noqa: E402

__all__ = ["__version__", "anatomy", "decode", "encode"]
