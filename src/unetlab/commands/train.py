"""`unetlab train METHOD --out DIR ...`: the Accelerate loop; each METHOD takes the loop's options and its own."""

from __future__ import annotations

import argparse

from .args import Parser
from .train_methods import LOOP, METHODS, owners


class MethodParser(Parser):
    """The parser of one method: an option it does not take is an error naming the methods that do take it."""

    def __init__(self, *args, method: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [e.split("=")[0] for e in extras if e.startswith("--")]
            foreign = [
                f"{f} is not an option of {self.method} (only of {', '.join(owners(f))})" for f in flags if owners(f)
            ]
            self.error("; ".join(foreign) if foreign else f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on the shared loop: " + ", ".join(METHODS) + " (HF Accelerate; CPU or GPUs)",
        description=__doc__,
    )
    methods = p.add_subparsers(dest="method", required=True, parser_class=MethodParser)
    for name, method in METHODS.items():
        m = methods.add_parser(name, help=method.help, description=f"{name}: {method.help}", method=name)
        loop = m.add_argument_group("training loop")
        for option in LOOP + method.loop:
            option.add_to(loop)
        own = m.add_argument_group(f"{name} options (the run's identity: --resume refuses a change)")
        for option in method.own:
            option.add_to(own)
    p.set_defaults(func=run)


def run_identity(args: argparse.Namespace) -> dict:
    """The command and the method's own options: stored with each checkpoint, compared by `--resume`."""
    return {"command": f"train {args.method}", **{o.dest: getattr(args, o.dest) for o in METHODS[args.method].own}}


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from ..train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    method = METHODS[args.method]
    if method.data and args.data is None:
        raise ValueError(f"data: --data is required for {args.method} ({method.data})")
    task = method.task(args)
    cfg = TrainConfig(
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        min_lr_ratio=args.min_lr_ratio,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        resume=args.resume,
        init_from=getattr(args, "init_from", None),
        progress=not args.no_progress,
        run=run_identity(args),
    )
    state = train(task, cfg)
    if PartialState().is_main_process:  # under `accelerate launch`, one line for the run
        print(
            f"trained {args.method} to step {state['step']} (loss {state['loss_avg']:.4f}, "
            f"{state['elapsed_s']:.0f} s); checkpoints in {args.out}"
        )
    return 0
