"""The options and task of `unetlab train clockwork`: distil Clockwork's adaptor for a pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import Option, int_at_least, positive_float, positive_int

OPTIONS = (
    Option("--model", default=None, help="digits | shapes | a pipeline folder (required)"),
    Option("--level", type=positive_int, default=1, help="cut level: how many high-resolution levels run"),
    Option("--clock", type=int_at_least(2), default=2, help="full UNet every CLOCK steps; the adaptor between"),
    Option("--trajectories", type=positive_int, default=128, help="recorded sampling calls (one image each)"),
    Option(
        "--trajectory-steps",
        type=int_at_least(2),
        default=50,
        help="steps of the recorded calls, with the pipeline's own scheduler (the bench's: 50)",
    ),
    Option(
        "--guidance-scale",
        type=positive_float,
        default=None,
        help="guidance of the recorded calls (default: the pipeline's; shapes: 5, as the bench)",
    ),
    Option(
        "--adaptor-channels",
        type=positive_int,
        default=None,
        help="adaptor width (default: the channels of the high-resolution input it reads)",
    ),
    Option(
        "--prompts",
        default=None,
        metavar="FILE",
        help="prompts, one a line, for text-conditional pipelines other than shapes",
    ),
)


def read_prompts(path: str | None) -> list[str] | None:
    """The prompts of file `path`, one a line (None: the pipeline's own)."""
    if path is None:
        return None
    file = Path(path)
    if file.is_dir():
        raise IsADirectoryError(f"prompts: {path} is a folder; give a text file, one prompt a line")
    if not file.is_file():
        raise FileNotFoundError(f"prompts: no such file {path}")
    try:
        prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"prompts: {path} is not UTF-8 text; give a text file, one prompt a line") from None
    if not prompts:
        raise ValueError(f"prompts: {path} holds no prompt")
    return prompts


def make_task(args: argparse.Namespace):
    """The `ClockworkTask` of `unetlab train clockwork`."""
    from ..loading import check_exists, load
    from ..train.clockwork import ClockworkTaskConfig, make_task

    if args.model is None:
        raise ValueError("model: --model is required for clockwork (digits, shapes or a pipeline folder)")
    check_exists(args.model)
    cfg = ClockworkTaskConfig(
        level=args.level,
        clock=args.clock,
        trajectories=args.trajectories,
        num_inference_steps=args.trajectory_steps,
        guidance_scale=args.guidance_scale,
        channels=args.adaptor_channels,
        seed=args.seed,
    )
    prompts = read_prompts(args.prompts)
    return make_task(load(args.model), args.model, cfg, prompts)
