"""The `unetlab train` methods in one table: help, own options (the run's identity), loop options, task."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from ..train.target import PREDICTION_TYPES
from . import clockwork, codi, likelihood
from .args import (
    Option,
    channel_list,
    nonnegative_int,
    open_unit_float,
    positive_float,
    positive_int,
    unit_float,
)

# The loop options of every method.
LOOP = (
    Option("--out", required=True, help="run folder (checkpoints, sample grids, exported pipeline)"),
    Option("--steps", type=positive_int, default=6000),
    Option("--batch-size", type=positive_int, default=128, help="per process"),
    Option("--lr", type=positive_float, default=1e-3),
    Option("--warmup", type=nonnegative_int, default=200),
    Option(
        "--min-lr-ratio", type=unit_float, default=0.1, help="the cosine decay ends at this fraction of --lr (0 to 1)"
    ),
    Option("--ema-decay", type=open_unit_float, default=0.999),
    Option("--checkpoint-every", type=positive_int, default=500),
    Option("--seed", type=nonnegative_int, default=0),
    Option("--threads", type=positive_int, default=None, help="torch CPU threads"),
    Option("--resume", action="store_true", help="continue from the latest checkpoint in --out"),
    Option("--no-progress", action="store_true"),
)
INIT_FROM = Option(
    "--init-from",
    default=None,
    metavar="PIPELINE",
    help="start from this pipeline's weights (a save_pretrained folder or a shipped name): fine-tuning",
)
DDIM_SAMPLES = Option(
    "--sample-steps",
    type=positive_int,
    default=None,
    help="DDIM steps of the checkpoint sample grids (default 50; t2i on scenes: 25)",
)
PREDICTION_TYPE = Option(
    "--prediction-type",
    choices=PREDICTION_TYPES,
    default="epsilon",
    help="what the UNet predicts (v_prediction: Salimans & Ho 2022)",
)
IMAGES = "digits | shapes | path to an image folder"


def image_task(args: argparse.Namespace):
    """The task of ddpm, t2i, autoencoder or judge (`unetlab.train.tasks`)."""
    from ..train.tasks import make_task

    own = {o.dest: getattr(args, o.dest) for o in METHODS[args.method].options}
    if own.get("decoder_only") and getattr(args, "init_from", None) is None:
        raise ValueError(
            "decoder-only: fine-tunes the decoder of an existing autoencoder; give --init-from (e.g. mini-sd)"
        )
    task = make_task(args.method, args.data, seed=args.seed, **own)
    if getattr(args, "sample_steps", None) is not None:
        steps = task.scheduler.config.num_train_timesteps
        if args.sample_steps > steps:
            raise ValueError(
                f"sample-steps: {args.sample_steps} DDIM steps exceed the {steps} training timesteps; "
                f"expected 1 to {steps}"
            )
        task.sample_steps = args.sample_steps
    return task


@dataclass(frozen=True)
class Method:
    """A method: what its required `--data` takes (or None), own options, loop options beyond `LOOP`, task."""

    help: str
    data: str | None
    options: tuple[Option, ...]
    loop: tuple[Option, ...]
    task: Callable[[argparse.Namespace], object]

    @property
    def own(self) -> tuple[Option, ...]:
        """Its own options, `--data` first: what the run's identity holds."""
        data = (Option("--data", default=None, help=f"{self.data} (required)"),) if self.data else ()
        return data + self.options


METHODS = {
    "ddpm": Method(
        "unconditional UNet2DModel (DDPM, Ho et al. 2020)",
        IMAGES,
        (
            Option(
                "--size", type=positive_int, default=None, help="image size (default: 16 digits/folders, 24 shapes)"
            ),
            PREDICTION_TYPE,
        ),
        (INIT_FROM, DDIM_SAMPLES),
        image_task,
    ),
    "t2i": Method(
        "text-conditional UNet and text encoder (on scenes: mini-sd's latent UNet and CLIP text encoder)",
        "shapes | scenes",
        (
            Option(
                "--size",
                type=positive_int,
                default=None,
                help="image size on shapes (default 24; scenes are mini-sd's 64x64)",
            ),
            PREDICTION_TYPE,
            Option(
                "--vae",
                default=None,
                metavar="FOLDER",
                help="scenes: the AutoencoderKL folder whose latents it learns (<run>/checkpoint-N/pipeline of "
                "`unetlab train autoencoder --data scenes`)",
            ),
            Option(
                "--block-channels",
                type=channel_list,
                default=None,
                metavar="C1,C2,C3,C4",
                help="scenes: the UNet's widths (default 32,64,128,128; the GPU configuration 64,128,256,256)",
            ),
        ),
        (INIT_FROM, DDIM_SAMPLES),
        image_task,
    ),
    "autoencoder": Method(
        "mini-sd's AutoencoderKL",
        "scenes",
        (
            Option(
                "--decoder-only",
                action="store_true",
                help="fine-tune the decoder of the --init-from autoencoder, its encoder frozen: the latents a UNet "
                "was trained on stay the same (as Stable Diffusion's fine-tuned decoders)",
            ),
        ),
        (INIT_FROM,),
        image_task,
    ),
    "judge": Method("mini-sd's scene judge (the classifier that scores its images)", "scenes", (), (), image_task),
    "vdm": Method(
        "Variational Diffusion Model: the likelihood bound in bits per dimension (Kingma et al. 2021)",
        likelihood.DATA_HELP,
        (likelihood.SIZE, *likelihood.VDM_OPTIONS, *likelihood.MODEL),
        (likelihood.SAMPLE_STEPS,),
        likelihood.make_task,
    ),
    "diffenc": Method(
        "DiffEnc: VDM with a time-dependent encoder of the data, in bits per dimension (Nielsen et al. 2024)",
        likelihood.DATA_HELP,
        (likelihood.SIZE, *likelihood.DIFFENC_OPTIONS, *likelihood.MODEL),
        (likelihood.SAMPLE_STEPS,),
        likelihood.make_task,
    ),
    "codi": Method(
        "conditional distillation of --teacher (CoDi, Mei et al. 2024)",
        None,
        codi.OPTIONS,
        (INIT_FROM,),
        codi.make_task,
    ),
    "clockwork": Method(
        "Clockwork's learned adaptor of --model, distilled on its own trajectories",
        None,
        clockwork.OPTIONS,
        (),
        clockwork.make_task,
    ),
}


def owners(flag: str) -> list[str]:
    """The methods that take option `flag`."""
    return [name for name, m in METHODS.items() if any(flag in o.flags for o in m.loop + m.own)]
