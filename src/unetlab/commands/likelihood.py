"""The VDM / DiffEnc commands: the options and task of `unetlab train vdm|diffenc`, and `unetlab eval bpd`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import Option, nonnegative_int, positive_int

DATA_HELP = "digits | shapes | path to an image folder"
SIZES = {"digits": 8, "shapes": 24}  # the native image size when none is given (an image folder: 32)
SIZE = Option("--size", type=positive_int, default=None, help="image size (default: 8 digits, 24 shapes, 32 folders)")
# The options vdm and diffenc share; each adds its own below.
MODEL = (
    Option(
        "--schedule",
        choices=("fixed", "learned", "monotone"),
        default="fixed",
        help="γ(t): fixed linear, learned endpoints, learned monotone network",
    ),
    Option("--channels", type=positive_int, default=64, help="score net width"),
    Option("--blocks", type=positive_int, default=4, help="score net resnet blocks per side"),
    Option("--no-attention", action="store_true", help="drop the score net's middle attention"),
    Option(
        "--fourier-exponents",
        type=nonnegative_int,
        nargs="*",
        default=[6, 7],
        metavar="N",
        help="score net input features sin, cos(2ⁿ·2π·z) (default: VDM's 6 7; none: no features)",
    ),
    Option(
        "--track-test",
        action="store_true",
        help="score the EMA model's bound on the test split at every checkpoint (the training curve)",
    ),
    Option(
        "--track-repeats",
        type=positive_int,
        default=1,
        metavar="N",
        help="--track-test: passes of noise per score, pass r with seed r (default 1; more: a steadier curve)",
    ),
)
VDM_OPTIONS = (
    Option(
        "--parameterization", choices=("eps", "v"), default="v", help="what the score net predicts: ε or v (default v)"
    ),
)
DIFFENC_OPTIONS = (
    Option(
        "--encoder",
        choices=("trainable", "nt"),
        default="trainable",
        help="trainable: x_φ(x, t), a learned encoder; nt: α_t² x (DiffEnc-nt)",
    ),
    Option("--encoder-channels", type=positive_int, default=32, help="encoder width (trainable)"),
    Option("--encoder-blocks", type=positive_int, default=2, help="encoder resnet blocks (trainable)"),
)
SAMPLE_STEPS = Option(
    "--sample-steps",
    type=positive_int,
    default=None,
    help="steps of the checkpoint sample grids (default 100, ancestral)",
)


def image_size(data: str, size: int | None) -> int:
    """`size`, or the native size of `data` when it is None (`SIZES`; an image folder: 32)."""
    return SIZES.get(data, 32) if size is None else size


def make_task(args: argparse.Namespace):
    """The `LikelihoodTask` that `unetlab train vdm|diffenc` trains."""
    import torch

    from ..data import dataset
    from ..likelihood import LikelihoodConfig, LikelihoodTask

    size = image_size(args.data, args.size)
    data = dataset(args.data, "train", size, args.seed)
    channels = int(data[torch.arange(1)]["images"].shape[1])
    own = {o.dest: getattr(args, o.dest) for o in (VDM_OPTIONS if args.method == "vdm" else DIFFENC_OPTIONS)}
    cfg = LikelihoodConfig(
        method=args.method,
        schedule=args.schedule,
        in_channels=channels,
        channels=args.channels,
        blocks=args.blocks,
        attention=not args.no_attention,
        fourier_exponents=tuple(args.fourier_exponents),
        init_seed=args.seed,
        **own,
    )
    if args.track_repeats > 1 and not args.track_test:
        raise ValueError(f"track-repeats: {args.track_repeats} passes need --track-test (the curve they score)")
    held_out = dataset(args.data, "test", size, args.seed) if args.track_test else None
    return LikelihoodTask(
        cfg,
        data,
        sample_steps=100 if args.sample_steps is None else args.sample_steps,
        eval_dataset=held_out,
        eval_repeats=args.track_repeats,
    )


def register_bpd(subparsers) -> None:
    """`unetlab eval bpd RUN --data digits`: the bound in bits/dim on the test split with the EMA weights."""
    p = subparsers.add_parser(
        "bpd",
        help="bits per dimension of a VDM/DiffEnc run on the test split (EMA weights)",
        description=register_bpd.__doc__,
    )
    p.add_argument(
        "run", help="a training --out folder (its latest checkpoint), one checkpoint folder or a saved model"
    )
    p.add_argument("--data", default="digits", help=DATA_HELP)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--size", type=positive_int, default=None, help="image size (default: 8 for digits)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=1,
        help="passes over the data (fresh noise and t each pass); with 2 or more, also the evaluation noise",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the evaluation noise")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    p.set_defaults(func=run_bpd)


def model_dir(run: str | Path) -> Path:
    """The EMA model folder of a run: `<run>/<latest checkpoint>/pipeline`, `<checkpoint>/pipeline` of one checkpoint
    folder, or `run` itself if it holds a model."""
    from ..likelihood.build import CONFIG_NAME

    run = Path(run)
    if (run / CONFIG_NAME).is_file():
        return run
    if (run / "pipeline" / CONFIG_NAME).is_file():
        return run / "pipeline"
    pointer = run / "latest"
    if pointer.is_file():
        return run / pointer.read_text().strip() / "pipeline"
    raise FileNotFoundError(f"run: {run} is neither a saved VDM/DiffEnc model nor a training folder with a checkpoint")


def run_bpd(args: argparse.Namespace) -> int:
    import torch

    from ..data import dataset
    from ..likelihood import load_model
    from ..vdm import evaluate_bpd, images_to_x
    from ..vdm.bpd import mean_of_passes

    model, cfg = load_model(model_dir(args.run))
    model.eval()
    data = dataset(args.data, args.split, image_size(args.data, args.size))
    channels = int(data[torch.arange(1)]["images"].shape[1])
    if channels != cfg.in_channels:
        raise ValueError(
            f"data: {args.data} has {channels}-channel images; the model in {args.run} was trained on "
            f"{cfg.in_channels}-channel images (give the data it was trained on)"
        )
    x = images_to_x(data[torch.arange(len(data))]["images"])
    generator = torch.Generator().manual_seed(args.seed)
    runs = [evaluate_bpd(model, x, generator, args.batch_size) for _ in range(args.repeats)]
    result = mean_of_passes(runs) if args.repeats > 1 else {k: v for k, v in runs[0].items() if k != "total_stderr"}
    result.update(model=cfg.label, examples=int(x.shape[0]), repeats=args.repeats, split=args.split)
    noise = f" ± {result['total_mc_stderr']:.4f} (evaluation noise)" if args.repeats > 1 else ""
    print(
        f"{cfg.label} on {args.data} {args.split} ({x.shape[0]} images x {args.repeats}): "
        f"total {result['total']:.4f}{noise} bpd = reconstruction {result['reconstruction']:.4f} "
        f"+ prior {result['prior']:.4f} + diffusion {result['diffusion']:.4f}"
    )
    if args.json:
        from ..atomic import write_json

        write_json(Path(args.json), result)
    return 0
