"""`unetlab tune`: the fastest recipe (steps, scheduler, accelerator stack) meeting a quality budget."""

from __future__ import annotations

from .args import duration, int_at_least, positive_int


def register(sub) -> None:
    p = sub.add_parser("tune", help="search the fastest recipe meeting a quality budget; writes recipe JSON + plot")
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="digits, shapes (shipped), a saved pipeline folder or a hub id",
    )
    p.add_argument(
        "--budget",
        required=True,
        metavar="BOUND",
        help='quality against the full-step baseline from the same noise: "psnr>=35", "ssim>=0.98", '
        '"accuracy>=0.99" (models with a classifier) or "lpips<=0.1" (torchmetrics image extra)',
    )
    p.add_argument("--steps", type=int_at_least(2), default=50, help="the baseline's steps (default 50)")
    p.add_argument(
        "--scheduler",
        default="ddim",
        help="the baseline's solver: ddim (default), dpm++, unipc, euler, ... or a diffusers class name",
    )
    p.add_argument(
        "--solvers",
        metavar="LIST",
        help="solvers searched besides the baseline's, comma-separated (default ddim,dpm++,unipc; "
        "'none': only the baseline's)",
    )
    p.add_argument("--time-limit", type=duration, default=600.0, help="e.g. 600, 10m, 1h (default 10m)")
    p.add_argument(
        "--out",
        dest="recipe",
        required=True,
        metavar="RECIPE.json",
        help="the recipe; the plot goes next to it (.png), the resumable work folder to <name>.tune/",
    )
    p.add_argument("--calibration-images", type=positive_int, default=8, help="calibration seeds (default 8)")
    p.add_argument("--validation-images", type=positive_int, default=8, help="held-out validation seeds (default 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from unetlab.bench.budget import parse_budget
    from unetlab.bench.space import SOLVERS
    from unetlab.bench.tune_report import front_table, plot
    from unetlab.bench.tuner import tune
    from unetlab.bench.workload import SHIPPED_WORKLOADS

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "tune: runs as one process (every process would search into the same work folder); "
            "start it without accelerate launch"
        )
    if not args.recipe.endswith(".json"):
        raise ValueError(f"--out: expected a .json file name for the recipe, got {args.recipe!r}")
    # parsed once, before loading, for the judge the shipped workload has (a user's pipeline has none)
    budget = parse_budget(args.budget, args.model if args.model in SHIPPED_WORKLOADS else None)
    text = args.solvers if args.solvers is not None else ",".join(SOLVERS)
    solvers = () if text.strip().lower() == "none" else tuple(s.strip() for s in text.split(","))
    result = tune(
        args.model,
        budget,
        steps=args.steps,
        scheduler=args.scheduler,
        time_limit=args.time_limit,
        out=args.recipe,
        calibration=args.calibration_images,
        validation=args.validation_images,
        progress=not args.no_progress,
        solvers=solvers,
    )
    out = Path(args.recipe)
    png = out.with_suffix(".png")
    plot(result, png)
    result.recipe.save(out)
    t = result.recipe.tuned_on
    print(front_table(result))
    print(
        f"chosen: {result.chosen['name']}: {t['speedup_wall']:.2f}× wall ({t['speedup_wall_min']:.2f}–"
        f"{t['speedup_wall_max']:.2f}), {t['speedup_flops']:.2f}× FLOPs, {result.budget.metric} "
        f"{t['validation'][result.budget.metric]:.4g} on {len(t['validation_seeds'])} validation seeds "
        f"({result.budget}); tuned in {result.seconds:.0f} s"
    )
    print(f"recipe: {out}; plot: {png}; work folder (resume, other budgets): {result.work}")
    return 0
