"""`unetlab <command>`: each command lives in `unetlab.commands.<name>` and registers its own parser.

Exit codes: 0 success, 2 bad input (one line naming the argument and what is valid), 1 a failure while
running (one line), 130 interrupted. `--debug` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import sys

from .commands.args import Parser

# One module per command; each defines `register(subparsers)` and sets `func` on its parser.
COMMANDS = ["info", "demo", "train", "eval", "analyze", "bench", "tune", "video"]
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="unetlab", description="Measure, accelerate and train around the UNet inside diffusion models."
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"unetlab.commands.{name}").register(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, RuntimeError)) else f"{type(err).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    from .commands import paths

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    prog = f"unetlab {args.command}"
    try:
        paths.check(args)
    except paths.UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    from .commands.launch import HINT, end_processes, single_process_launch

    if single_process_launch():
        print(f"{prog}: warning: {HINT}", file=sys.stderr)
    atexit.unregister(end_processes)  # once, however many commands this process runs
    atexit.register(end_processes)
    before = paths.snapshot(args)
    try:
        return int(args.func(args) or 0)
    except BaseException as err:  # every failure becomes one line and leaves nothing behind
        paths.clean_failed(before)
        if debug or isinstance(err, SystemExit):
            raise
        if isinstance(err, KeyboardInterrupt):
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2 if isinstance(err, USAGE_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())
