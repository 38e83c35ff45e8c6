"""The CoDi command: the options and task of `unetlab train codi` (`unetlab eval codi` is in `codi_eval`)."""

from __future__ import annotations

import argparse

from ..codi.degrade import TASKS
from ..codi.loss import ODE_SOLVERS, T_MAX, TIMESTEP_SAMPLING
from ..codi.task import VARIANTS
from .args import Option, positive_int

OPTIONS = (
    Option("--data", default=None, help="digits, the teacher's data (the default; nothing else is valid)"),
    Option(
        "--teacher",
        default="digits",
        help="the unconditional pipeline to adapt: digits, or a DDPM/DDIM "
        "save_pretrained folder whose dataset is --data",
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
)


def make_task(args: argparse.Namespace):
    """The `CoDiTask` of `unetlab train codi` (teacher from `unetlab.load`; data: the digits train split)."""
    from ..codi import CoDiLossConfig, CoDiTask, CoDiTaskConfig
    from ..data import dataset
    from ..loading import load

    data = args.data or "digits"
    if data != "digits":
        raise ValueError(f"data: codi trains on digits (the teacher's data); got {data!r}")
    teacher = load(args.teacher)
    size = teacher.unet.config.sample_size
    loss = CoDiLossConfig(
        grid_size=args.grid_size,
        t_max=args.t_max,
        ode_solver=args.ode_solver,
        noise_consistency=not args.no_noise_consistency,
        timestep_sampling=args.timestep_sampling,
    )
    cfg = CoDiTaskConfig(task=args.task, variant=args.variant, loss=loss, seed=args.seed)
    return CoDiTask(teacher, dataset(data, "train", size), cfg)
