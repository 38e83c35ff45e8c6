"""`unetlab train ddpm|t2i --data ... --out ...`: train a model with unetlab's Accelerate loop."""

from __future__ import annotations

import argparse

from ..train.target import PREDICTION_TYPES
from . import clockwork, codi, likelihood
from .args import channel_list, nonnegative_int, open_unit_float, positive_float, positive_int, unit_float

DATA_HELP = "digits | shapes | scenes | path to an image folder"


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model on the shared loop: ddpm, t2i, autoencoder, judge, vdm, diffenc, codi, "
                              "clockwork (HF Accelerate; CPU or GPUs)",
                              description=__doc__)
    p.add_argument("method", choices=("ddpm", "t2i", "autoencoder", "judge", *likelihood.METHODS, *codi.METHODS, *clockwork.METHODS),
                   help="ddpm: unconditional UNet2DModel; t2i: text-conditional (on scenes: mini-sd's latent UNet and CLIP "
                        "text encoder); autoencoder: mini-sd's AutoencoderKL; judge: mini-sd's scene judge; vdm, diffenc: likelihood (bpd); "
                        "codi: conditional distillation of --teacher; clockwork: the learned adaptor of --model")
    p.add_argument("--data", default=None, help=DATA_HELP + " (t2i: shapes or scenes; autoencoder, judge: scenes; required except for codi, clockwork)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, sample grids, exported pipeline)")
    p.add_argument("--steps", type=positive_int, default=6000)
    p.add_argument("--batch-size", type=positive_int, default=128, help="per process")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--warmup", type=nonnegative_int, default=200)
    p.add_argument("--min-lr-ratio", type=unit_float, default=0.1,
                   help="the cosine decay ends at this fraction of --lr (0 to 1)")
    p.add_argument("--ema-decay", type=open_unit_float, default=0.999)
    p.add_argument("--checkpoint-every", type=positive_int, default=500)
    p.add_argument("--size", type=positive_int, default=None, help="image size (default: 16 digits/folders, 24 shapes)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default="epsilon",
                   help="ddpm, t2i: what the UNet predicts (v_prediction: Salimans & Ho 2022)")
    p.add_argument("--init-from", default=None, metavar="PIPELINE",
                   help="start from this pipeline's weights (a save_pretrained folder or a shipped name): fine-tuning")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("mini-sd (t2i and autoencoder on --data scenes)")
    g.add_argument("--vae", default=None, metavar="FOLDER",
                   help="t2i on scenes: the AutoencoderKL folder whose latents it learns (<run>/checkpoint-N/pipeline "
                        "of `unetlab train autoencoder --data scenes`)")
    g.add_argument("--block-channels", type=channel_list, default=None, metavar="C1,C2,C3,C4",
                   help="t2i on scenes: the UNet's widths (default 32,64,128,128; the GPU configuration 64,128,256,256)")
    likelihood.add_train_arguments(p)
    codi.add_train_arguments(p)
    clockwork.add_train_arguments(p)
    p.set_defaults(func=run)


# Options that do not change what a run computes; every other option must match when resuming.
NOT_IDENTITY = ("command", "func", "out", "resume", "threads", "no_progress", "checkpoint_every", "steps",
                "batch_size", "lr", "warmup", "min_lr_ratio", "ema_decay", "seed", "init_from", "sample_steps")


def run_identity(args: argparse.Namespace) -> dict:
    """The command and model options of this run, stored with each checkpoint and compared by `--resume`
    (the loop's own settings are compared by the loop)."""
    identity = {k: v for k, v in vars(args).items() if k not in NOT_IDENTITY and k != "method"}
    return {"command": f"train {args.method}", **identity}


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from ..train import TrainConfig, train
    from ..train.tasks import make_task

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is None and args.method not in (*codi.METHODS, *clockwork.METHODS):
        raise ValueError(f"data: --data is required for {args.method} ({DATA_HELP})")
    if args.method in codi.METHODS:
        task = codi.make_task(args)
    elif args.method in clockwork.METHODS:
        task = clockwork.make_task(args)
    elif args.method in likelihood.METHODS:
        if args.prediction_type != "epsilon":
            raise ValueError(f"prediction-type: {args.method} trains its own parameterisation; only ddpm and t2i "
                             "take --prediction-type")
        task = likelihood.make_task(args)
    else:
        task = make_task(args.method, args.data, args.size, seed=args.seed, prediction_type=args.prediction_type,
                         vae=args.vae, block_channels=args.block_channels)
        if args.sample_steps is not None:
            task.sample_steps = args.sample_steps
    cfg = TrainConfig(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                      min_lr_ratio=args.min_lr_ratio, ema_decay=args.ema_decay,
                      checkpoint_every=args.checkpoint_every, seed=args.seed,
                      resume=args.resume, init_from=args.init_from, progress=not args.no_progress,
                      run=run_identity(args))
    state = train(task, cfg)
    if PartialState().is_main_process:  # under `accelerate launch`, one line for the run
        print(f"trained {args.method} to step {state['step']} (loss {state['loss_avg']:.4f}, "
              f"{state['elapsed_s']:.0f} s); checkpoints in {args.out}")
    return 0
