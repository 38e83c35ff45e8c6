"""The CoDi command: the options and task of `unetlab train codi` (`unetlab eval codi` is in `codi_eval`)."""

from __future__ import annotations

import argparse

from ..codi.degrade import TASKS
from ..codi.loss import ODE_SOLVERS, T_MAX, TIMESTEP_SAMPLING
from ..codi.task import VARIANTS
from .args import Option, positive_int, unit_float

OPTIONS = (
    Option(
        "--data",
        default=None,
        help="the teacher's data: digits for an unconditional teacher, scenes for a text-to-image one (the default "
        "follows --teacher)",
    ),
    Option(
        "--teacher",
        default="digits",
        help="the pipeline to adapt: digits (or a DDPM/DDIM save_pretrained folder trained on digits), or the "
        "text-to-image mini-sd (or a StableDiffusionPipeline folder trained on scenes)",
    ),
    Option("--task", choices=TASKS, default="sr4", help="sr4: 4x super-resolution; inpaint: a masked box"),
    Option(
        "--variant",
        choices=VARIANTS,
        default="codi",
        help="codi: adapter + UNet trained; pe-codi: adapter only; controlnet: plain diffusion loss",
    ),
    Option("--grid-size", type=positive_int, default=20, help="N, the consistency grid's number of intervals"),
    Option(
        "--t-max", type=positive_int, default=T_MAX, help="the grid's top training timestep (below the teacher's T)"
    ),
    Option(
        "--ode-solver",
        choices=ODE_SOLVERS,
        default="adapted",
        help="the ODE step z_t -> z_s by the adapted model's f or by the frozen teacher",
    ),
    Option("--no-noise-consistency", action="store_true", help="drop the noise-consistency term"),
    Option("--timestep-sampling", choices=TIMESTEP_SAMPLING, default="per_example"),
    Option(
        "--caption-dropout",
        type=unit_float,
        default=None,
        help='text-to-image teachers: the share of captions replaced by "" (default 0.1; ControlNet used 0.5)',
    ),
)


def make_task(args: argparse.Namespace):
    """The task of `unetlab train codi`: `CoDiTask` on the digits train split for an unconditional teacher,
    `TextCoDiTask` on the scenes train split for a text-to-image one (teacher from `unetlab.load`)."""
    from ..codi import CoDiLossConfig, CoDiTask, CoDiTaskConfig, TextCoDiTask
    from ..data import dataset, scenes
    from ..loading import load

    if args.data not in (None, "digits", "scenes"):
        raise ValueError(f"data: codi trains on digits or scenes (the teacher's data); got {args.data!r}")
    teacher = load(args.teacher)
    text = getattr(teacher, "vae", None) is not None  # a latent text-to-image teacher (StableDiffusionPipeline)
    expected = "scenes" if text else "digits"
    data = args.data or expected
    if data != expected:
        raise ValueError(
            f"data: {args.teacher} is trained on {expected} and codi trains on the teacher's data; got {data!r}"
        )
    loss = CoDiLossConfig(
        grid_size=args.grid_size,
        t_max=args.t_max,
        ode_solver=args.ode_solver,
        noise_consistency=not args.no_noise_consistency,
        timestep_sampling=args.timestep_sampling,
    )
    cfg = CoDiTaskConfig(task=args.task, variant=args.variant, loss=loss, seed=args.seed)
    if text:
        dropout = 0.1 if args.caption_dropout is None else args.caption_dropout
        return TextCoDiTask(teacher, scenes.ScenesDataset("train", seed=args.seed), cfg, caption_dropout=dropout)
    if args.caption_dropout is not None:
        raise ValueError(f"caption-dropout: {args.teacher} has no captions; only a text-to-image teacher (mini-sd)")
    return CoDiTask(teacher, dataset(data, "train", teacher.unet.config.sample_size), cfg)
