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
        help='fidelity to the full-step baseline from the same noise: "psnr>=35", "ssim>=0.98", "lpips<=0.1" '
        '(torchmetrics image extra); the judges (digits, shapes, mini-sd): "accuracy>=0.99", "allcorrect>=0.98*base" '
        '(shapes, mini-sd), "fd<=1.1*base" (FACTOR*base: times the baseline\'s figure on the same seeds)',
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
    import sys
    from pathlib import Path

    from unetlab.bench.budget import check_set_sizes, parse_budget
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
    check_set_sizes(
        budget, args.calibration_images, args.validation_images, ("--calibration-images", "--validation-images")
    )
    out = Path(args.recipe)
    png = out.with_suffix(".png")
    if png.is_dir() or (png.exists() and not os.access(png, os.W_OK)):
        why = "is a folder" if png.is_dir() else "is not writable"
        raise ValueError(f"--out: {png} (the plot next to the recipe) {why}; move it or give another --out")
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
    result.recipe.save(out)  # first: nothing that fails after the search may lose it
    t = result.recipe.tuned_on
    print(front_table(result))
    m = result.budget.metric
    base = f" (baseline {t['baseline_validation'][m]:.4g})" if result.budget.relative else ""
    print(
        f"chosen: {result.chosen['name']}: {t['speedup_wall']:.2f}× wall ({t['speedup_wall_min']:.2f}–"
        f"{t['speedup_wall_max']:.2f}), {t['speedup_flops']:.2f}× FLOPs, {m} {t['validation'][m]:.4g}{base} on "
        f"{len(t['validation_seeds'])} validation seeds ({result.budget}); tuned in {result.seconds:.0f} s"
    )
    try:
        plot(result, png)
    except Exception as err:  # the recipe is written: say what is missing, keep it
        print(
            f"unetlab tune: error: --out: the plot {png} was not written ({' '.join(str(err).split())}); "
            f"the recipe is at {out}",
            file=sys.stderr,
        )
        return 1
    print(f"recipe: {out}; plot: {png}; work folder (resume, other budgets): {result.work}")
    return 0
