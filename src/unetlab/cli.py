"""`unetlab <command>`: each command lives in `unetlab.commands.<name>` and registers its own parser."""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per command; each defines `register(subparsers)` and sets `func` on its parser.
COMMANDS = ["info", "demo", "train", "eval", "analyze", "bench", "video"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetlab", description="Measure, accelerate and train around the UNet inside diffusion models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"unetlab.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"unetlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
