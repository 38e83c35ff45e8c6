"""Helpers for the CoDi commands: `unetlab train codi` options and `unetlab eval codi`."""

from __future__ import annotations

import argparse

METHODS = ("codi",)
TEACHERS = ("digits",)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `unetlab train codi` (ignored by the other methods)."""
    from ..codi.degrade import TASKS
    from ..codi.loss import ODE_SOLVERS, T_MAX, TIMESTEP_SAMPLING
    from ..codi.task import VARIANTS

    g = parser.add_argument_group("codi (conditional distillation of a shipped unconditional teacher)")
    g.add_argument("--teacher", default="digits", help="the unconditional pipeline to adapt: digits, or a "
                   "DDPM/DDIM save_pretrained folder whose dataset is --data")
    g.add_argument("--task", choices=TASKS, default="sr4", help="sr4: 4x super-resolution; inpaint: a masked box")
    g.add_argument("--variant", choices=VARIANTS, default="codi",
                   help="codi: adapter + UNet trained; pe-codi: adapter only; controlnet: plain diffusion loss")
    g.add_argument("--grid-size", type=int, default=20, help="N, the consistency grid's number of intervals")
    g.add_argument("--t-max", type=int, default=T_MAX, help="the grid's top training timestep")
    g.add_argument("--ode-solver", choices=ODE_SOLVERS, default="adapted",
                   help="the ODE step z_t -> z_s by the adapted model's f or by the frozen teacher")
    g.add_argument("--no-noise-consistency", action="store_true", help="drop the noise-consistency term")
    g.add_argument("--timestep-sampling", choices=TIMESTEP_SAMPLING, default="per_example")


def make_task(args: argparse.Namespace):
    """The `CoDiTask` of `unetlab train codi` (teacher from `unetlab.load`; data: the digits train split)."""
    from ..codi import CoDiLossConfig, CoDiTask, CoDiTaskConfig
    from ..data import DigitsDataset
    from ..models import load

    data = args.data or "digits"
    if data != "digits":
        raise ValueError(f"data: codi trains on digits (the teacher's data); got {data!r}")
    teacher = load(args.teacher)
    size = teacher.unet.config.sample_size
    loss = CoDiLossConfig(grid_size=args.grid_size, t_max=args.t_max, ode_solver=args.ode_solver,
                          noise_consistency=not args.no_noise_consistency, timestep_sampling=args.timestep_sampling)
    cfg = CoDiTaskConfig(task=args.task, variant=args.variant, loss=loss, seed=args.seed)
    return CoDiTask(teacher, DigitsDataset("train", size), cfg)
