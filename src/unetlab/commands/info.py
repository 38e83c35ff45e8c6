"""`unetlab info`: versions, and the anatomy table of a UNet given as a config JSON or saved folder."""

from __future__ import annotations

import platform

from .args import positive_int


def register(sub) -> None:
    p = sub.add_parser("info", help="print versions and, with --unet, a UNet's anatomy and FLOP shares")
    p.add_argument(
        "--unet", metavar="CONFIG_OR_PATH", help="a UNet config.json, a saved UNet folder, or a saved pipeline folder"
    )
    p.add_argument(
        "--sample-size", type=positive_int, default=None, help="spatial size for the FLOP count (default: config)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import accelerate
    import diffusers
    import torch

    import unetlab

    print(f"unetlab     {unetlab.__version__}")
    print(f"python      {platform.python_version()}")
    print(f"torch       {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    print(f"diffusers   {diffusers.__version__}")
    print(f"accelerate  {accelerate.__version__}")
    if args.unet:
        from unetlab.unet import anatomy, load_unet

        print()
        print(anatomy(load_unet(args.unet), args.sample_size).table())
    return 0
