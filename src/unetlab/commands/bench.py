"""`unetlab bench`: every accelerator side by side on the shipped models or a user's pipeline.

Under `accelerate launch`, the quality images are shared among the processes and the main process times the
methods and writes one report."""

from __future__ import annotations

from .args import int_at_least, nonnegative_int, positive_int


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark every accelerator: speed, FLOPs, memory and quality vs baseline")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME_OR_PATH",
        help="mini-sd, digits, shapes (shipped; default: all three), a saved pipeline folder or a hub id; repeatable",
    )
    p.add_argument(
        "--arch", choices=["sd15", "sdxl"], help="speed only at SD-1.5's or SDXL's UNet shape (needs --random-weights)"
    )
    p.add_argument("--random-weights", action="store_true", help="random weights: speed only, no quality columns")
    p.add_argument("--scale", type=int, choices=[1, 10], help="with --arch: 1 full size, 10 channels / 10 (default 10)")
    p.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16"], help="with --arch: the UNet's dtype (default float32)"
    )
    p.add_argument(
        "--latent-size",
        type=positive_int,
        metavar="N",
        help="with --arch: N×N latents (default the arch's own: sd15 64, sdxl 128)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        metavar="BACKEND",
        help="with --arch: time every row with the UNet under torch.compile (default backend inductor; "
        "eager traces without compiling); compile seconds reported separately",
    )
    p.add_argument("--out", default="bench-out", help="report folder (default: bench-out)")
    p.add_argument(
        "--baseline",
        metavar="SCHEDULER:STEPS",
        help="the baseline every row is measured against, e.g. dpm++:25, unipc:20 (default ddim:50)",
    )
    p.add_argument("--steps", type=int_at_least(2), help="shorthand for --baseline ddim:STEPS")
    p.add_argument("--num-images", type=positive_int, default=32, help="images per method for quality (default 32)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per sampling call for quality, so memory stays flat (default 32)",
    )
    p.add_argument("--timing-images", type=positive_int, default=8, help="images per timed call (default 8)")
    p.add_argument(
        "--repeats",
        type=int_at_least(2),
        default=3,
        help="timed rounds after a warm-up, method order rotated each round; speed-ups from each method's "
        "minimum time; rounds spreading > 25%% re-timed (default 3, at least 2)",
    )
    p.add_argument("--method", action="append", metavar="NAME", help="only this method (repeatable; see bench.md)")
    p.add_argument("--key-steps", metavar="JSON", help="derived key-step schedule for encoder propagation")
    p.add_argument("--block-skip-plan", metavar="JSON", help="block-skip plan from `unetlab analyze derive`")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the shorter method list; the other solvers' fewer-steps rows at half the baseline's steps only",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from accelerate import Accelerator

    from unetlab.bench.harness import SHIPPED, bench
    from unetlab.bench.report import markdown

    accelerator = Accelerator()
    result = bench(
        model=args.model or list(SHIPPED),
        out=args.out,
        steps=args.steps,
        num_images=args.num_images,
        timing_images=args.timing_images,
        repeats=args.repeats,
        methods=args.method,
        seed=args.seed,
        arch=args.arch,
        random_weights=args.random_weights,
        key_steps=args.key_steps,
        block_skip_plan=args.block_skip_plan,
        quick=args.quick,
        batch_size=args.batch_size,
        accelerator=accelerator,
        baseline=args.baseline,
        scale=args.scale,
        dtype=args.dtype,
        latent_size=args.latent_size,
        compile=args.compile,
    )
    if accelerator.is_main_process:
        print(markdown(result))
        print(f"report: {args.out}/bench.md, {args.out}/bench.json, {args.out}/pareto.png, {args.out}/grids/")
    return 0
