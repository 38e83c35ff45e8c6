"""VDMv vs DiffEnc-nt vs DiffEnc (trainable) on digits 8x8: train each with `unetlab train`, score with `unetlab eval
bpd`.

Runs the real CLI in-process, sequentially, one seed of all three models after another (so a cut-short sweep stays
balanced); a run whose result JSON exists is skipped, so the sweep can be restarted. Every run scores its EMA
model's bound on the test split at each of 20 checkpoints (`--track-test`), the training curve; a run counts as
converged when its test bound moved by less than 0.5% over the last fifth of training. Writes results.json,
table.md, runs.md, paired.md (differences to VDMv paired by seed), terms.png and curves.png under --out-dir: mean ±
standard error over seeds of each term,
steps, wall time and convergence per model; per run its convergence, bound and commands. `--schedule monotone` trains
the learned noise schedule (learned endpoints and
VDM's monotone network), `--schedule learned` its endpoints only, instead of the fixed linear one; rows of all
schedules share one out-dir. Every run is
scored with `--eval-repeats` passes of fresh noise (10 by default), whose spread gives the evaluation's own noise;
a finished run scored with another number of passes is re-scored without retraining.

    nice -n 10 .venv/bin/python benchmarks/likelihood.py --steps 3600 --seeds 0 1 2 --schedule fixed
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import time
from pathlib import Path

VARIANTS = {
    "VDMv": ["vdm", "--parameterization", "v"],
    "DiffEnc-nt": ["diffenc", "--encoder", "nt"],
    "DiffEnc": ["diffenc", "--encoder", "trainable"],
}
TERMS = ("total", "reconstruction", "prior", "diffusion")
CHECKPOINTS = 20
TOLERANCE = 0.005
LINES = {"fixed": "-", "learned": ":", "monotone": "--"}


def label(variant: str, schedule: str) -> str:
    """The table's row name: "learned γ" is VDM's full learned schedule (monotone network and endpoints)."""
    return {"fixed": variant, "learned": f"{variant}, learned endpoints", "monotone": f"{variant}, learned γ"}[schedule]


def run_name(variant: str, schedule: str, seed: int) -> str:
    return f"{variant}-s{seed}" if schedule == "fixed" else f"{variant}-{schedule}-s{seed}"


def train_argv(variant: str, schedule: str, seed: int, steps: int, runs: Path, size: argparse.Namespace) -> list[str]:
    return [
        "train",
        *VARIANTS[variant],
        "--data",
        "digits",
        "--size",
        "8",
        "--out",
        str(runs / run_name(variant, schedule, seed)),
        "--steps",
        str(steps),
        "--batch-size",
        str(size.batch_size),
        "--lr",
        str(size.lr),
        "--warmup",
        "20",
        "--min-lr-ratio",
        "0",
        "--ema-decay",
        "0.99",
        "--checkpoint-every",
        str(steps // CHECKPOINTS),
        "--track-test",
        *(["--track-repeats", str(size.track_repeats)] if size.track_repeats > 1 else []),
        "--schedule",
        schedule,
        "--channels",
        str(size.channels),
        "--blocks",
        str(size.blocks),
        *(["--no-attention"] if size.no_attention else []),
        *(
            ["--encoder-channels", str(size.encoder_channels), "--encoder-blocks", str(size.encoder_blocks)]
            if VARIANTS[variant][0] == "diffenc"
            else []
        ),  # vdm has no encoder
        "--fourier-exponents",
        *map(str, size.fourier_exponents),
        "--sample-steps",
        "20",
        "--seed",
        str(seed),
        "--threads",
        "1",
        "--no-progress",
    ]


def eval_argv(variant: str, schedule: str, seed: int, runs: Path, result: Path, repeats: int) -> list[str]:
    return [
        "eval",
        "bpd",
        str(runs / run_name(variant, schedule, seed)),
        "--data",
        "digits",
        "--size",
        "8",
        "--split",
        "test",
        "--repeats",
        str(repeats),
        "--seed",
        "0",
        "--json",
        str(result),
    ]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically (a temporary file beside it, then a rename) and close it."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    fig.savefig(tmp, dpi=120, format="png")
    os.replace(tmp, path)
    import matplotlib.pyplot as plt

    plt.close(fig)


def mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def cell(mean: float, se: float, spec: str) -> str:
    """ "mean ± s.e.", or the mean alone where one seed gives no standard error."""
    return f"{mean:{spec}}" if math.isnan(se) else f"{mean:{spec}} ± {se:{spec}}"


def signed(mean: float, se: float, spec: str) -> str:
    """`cell` with the mean's sign always shown."""
    return ("+" if mean >= 0 else "") + cell(mean, se, spec)


def convergence(curve: list[dict]) -> float:
    """Relative change of the test bound over the last fifth of training: |b(end) − b(0.8·end)| / b(end)."""
    end = curve[-1]
    start = min(curve, key=lambda c: abs(c["step"] - 0.8 * end["step"]))
    return abs(end["eval_total"] - start["eval_total"]) / end["eval_total"]


def summarise(rows: list[dict], out_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "| model | seeds | steps | converged (max change over last fifth) | wall s per run: loop / whole train command "
        "| total bpd | evaluation noise per run | reconstruction | prior | diffusion |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(4 * 3, 3.6))
    curves_fig, curves_ax = plt.subplots(1, 2, figsize=(11, 4))
    colours = dict(zip(VARIANTS, ("C0", "C1", "C2")))
    for i, name in enumerate(labels):
        got = [r for r in rows if r["label"] == name]
        stats = {k: mean_se([r[k] for r in got]) for k in TERMS}
        wall = sum(r["train_wall_s"] for r in got) / len(got)
        loop = sum(r["loop_s"] for r in got) / len(got)
        changes = [convergence(r["curve"]) for r in got]
        converged = all(c < TOLERANCE for c in changes)
        cells = [cell(*stats[k], ".2e" if k == "prior" else ".4f") for k in TERMS]
        lines.append(
            f"| {name} | {len(got)} | {got[0]['steps']} | {'yes' if converged else 'NO'} ({100 * max(changes):.3f}%) "
            f"| {loop:.0f} / {wall:.0f} | {cells[0]} | {noise(got)} | " + " | ".join(cells[1:]) + " |"
        )
        for ax, k in zip(axes, ("total", "prior", "diffusion")):
            ax.bar(i, stats[k][0], yerr=0 if math.isnan(stats[k][1]) else stats[k][1], capsize=4)
            ax.plot([i] * len(got), [r[k] for r in got], "k.", ms=4)
        for r in got:
            steps = [c["step"] for c in r["curve"]]
            style = dict(color=colours[r["variant"]], ls=LINES[r["schedule"]], lw=1)
            bound = [c["eval_total"] for c in r["curve"]]
            curves_ax[0].plot(steps, bound, label=name if r is got[0] else None, **style)
            curves_ax[1].plot([s / r["steps"] for s in steps], bound, **style)
    for ax, k in zip(axes, ("total", "prior", "diffusion")):
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
        ax.set_title(f"{k} (bits/dim)")
        ax.set_ylabel("bpd, test split, EMA weights")
        if k == "prior":
            ax.set_yscale("log")
    fig.suptitle("digits 8x8: mean ± s.e. over seeds (dots: seeds)")
    fig.tight_layout()
    write_figure(fig, out_dir / "terms.png")
    tail = [c["eval_total"] for r in rows for c in r["curve"] if c["step"] >= 0.5 * r["steps"]]
    curves_ax[1].set_xlim(0.5, 1.01)
    curves_ax[1].set_ylim(min(tail) - 0.05, max(tail) + 0.05)
    curves_ax[1].axvline(0.8, color="grey", lw=0.8, ls=":")
    for ax, title, x in zip(
        curves_ax,
        ("test bound during training", "second half (dotted: last fifth starts)"),
        ("optimiser step", "fraction of the run's steps"),
    ):
        ax.set_xlabel(x)
        ax.set_ylabel("bpd, test split, EMA weights")
        ax.set_title(title)
    curves_ax[0].set_yscale("log")
    curves_ax[0].legend(fontsize=7)
    curves_fig.tight_layout()
    write_figure(curves_fig, out_dir / "curves.png")
    return "\n".join(lines) + "\n"


def noise(rows: list[dict]) -> str:
    """The evaluation's Monte-Carlo standard error of one run's total (`unetlab eval bpd --repeats`), mean over runs."""
    values = [r["total_mc_stderr"] for r in rows if "total_mc_stderr" in r]
    return f"± {sum(values) / len(values):.4f} ({rows[0]['repeats']} passes)" if len(values) == len(rows) else "—"


def per_run(rows: list[dict]) -> str:
    """One line per run: its convergence, its bound and the two commands that produced it."""
    lines = [
        "| model | seed | steps | change over last fifth | total bpd ± evaluation noise | commands |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        change = convergence(r["curve"])
        lines.append(
            f"| {r['label']} | {r['seed']} | {r['steps']} | {100 * change:.3f}% "
            f"({'yes' if change < TOLERANCE else 'NO'}) "
            f"| {r['total']:.4f} ± {r.get('total_mc_stderr', math.nan):.4f} | `{r['command']}` |"
        )
    return "\n".join(lines) + "\n"


def paired(rows: list[dict]) -> str:
    """Paired by seed: DiffEnc-nt − VDMv and DiffEnc − VDMv per schedule, learned − fixed γ per variant; mean ± s.e.,
    seeds below 0."""
    lines = [
        "| schedule | difference | term | seeds | mean ± s.e. (bpd) | seeds below 0 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by = {(r["schedule"], r["variant"], r["seed"]): r for r in rows}
    for schedule in dict.fromkeys(r["schedule"] for r in rows):
        for variant in ("DiffEnc-nt", "DiffEnc"):
            seeds = sorted(s for (sc, v, s) in by if sc == schedule and v == variant and (sc, "VDMv", s) in by)
            if not seeds:
                continue
            for term in ("total", "diffusion"):
                diffs = [by[schedule, variant, s][term] - by[schedule, "VDMv", s][term] for s in seeds]
                m, se = mean_se(diffs)
                lines.append(
                    f"| {schedule} | {variant} − VDMv | {term} | {len(seeds)} | {signed(m, se, '.4f')} "
                    f"| {sum(d < 0 for d in diffs)} of {len(seeds)} |"
                )
    for schedule in dict.fromkeys(r["schedule"] for r in rows if r["schedule"] != "fixed"):
        for variant in VARIANTS:
            seeds = sorted(s for (sc, v, s) in by if sc == schedule and v == variant and ("fixed", v, s) in by)
            if seeds:
                diffs = [by[schedule, variant, s]["total"] - by["fixed", variant, s]["total"] for s in seeds]
                m, se = mean_se(diffs)
                lines.append(
                    f"| {schedule} − fixed | {variant} | total | {len(seeds)} | {signed(m, se, '.4f')} "
                    f"| {sum(d < 0 for d in diffs)} of {len(seeds)} |"
                )
    return "\n".join(lines) + "\n"


def rescore(result: Path, runs: Path, repeats: int, cli) -> None:
    """Score a finished run again with ``repeats`` passes (its training untouched) and update its row and command."""
    row = json.loads(result.read_text())
    scratch = result.with_name(f".rescore-{os.getpid()}-{result.name}")
    evaluate = eval_argv(row["variant"], row["schedule"], row["seed"], runs, scratch, repeats)
    if cli(evaluate) != 0:
        raise SystemExit(f"evaluating {result.stem} failed")
    row.update(json.loads(scratch.read_text()))
    scratch.unlink()
    evaluate[evaluate.index(str(scratch))] = str(result)
    row["command"] = row["command"].split(" && unetlab ")[0] + " && unetlab " + shlex.join(evaluate)
    write_atomic(result, json.dumps(row, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--schedule", choices=("fixed", "learned", "monotone"), default="fixed")
    parser.add_argument("--runs", default="runs/likelihood", help="training folders")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay to 0 over the run)")
    parser.add_argument("--channels", type=int, default=32, help="score network width")
    parser.add_argument("--blocks", type=int, default=2, help="score network ResNet blocks per side")
    parser.add_argument("--no-attention", action="store_true", help="score network without its middle attention")
    parser.add_argument("--encoder-channels", type=int, default=16, help="DiffEnc encoder width")
    parser.add_argument("--encoder-blocks", type=int, default=1, help="DiffEnc encoder blocks")
    parser.add_argument(
        "--fourier-exponents",
        type=int,
        nargs="*",
        default=[6, 7],
        help="score network input features sin, cos(2ⁿ·2π·z) (VDM's 6 7; digits' 17 grey levels: 3 4 6 7)",
    )
    parser.add_argument(
        "--eval-repeats",
        type=int,
        default=10,
        help="passes of `unetlab eval bpd` per run; finished runs scored with another number are re-scored",
    )
    parser.add_argument(
        "--track-repeats",
        type=int,
        default=1,
        help="passes of noise per point of the training curve (1: the tables in docs/likelihood)",
    )
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--out-dir", default="docs/likelihood", help="results.json, table.md, runs.md, terms.png, curves.png"
    )
    args = parser.parse_args()
    if args.steps < CHECKPOINTS or args.steps % CHECKPOINTS:
        parser.error(f"--steps: {args.steps} must be a positive multiple of {CHECKPOINTS}")
    if args.track_repeats < 1:
        parser.error(f"--track-repeats: {args.track_repeats} must be >= 1")
    if args.eval_repeats < 2:
        parser.error(f"--eval-repeats: {args.eval_repeats} must be >= 2 (the evaluation noise needs two passes)")

    import torch
    from tqdm.auto import tqdm

    from unetlab.cli import main as cli

    torch.set_num_threads(1)
    runs, out_dir = Path(args.runs), Path(args.out_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    jobs = [(seed, variant) for seed in args.seeds for variant in args.variants]
    for seed, variant in tqdm(jobs, desc=f"likelihood runs ({args.schedule})"):
        name = run_name(variant, args.schedule, seed)
        result = out_dir / "runs" / f"{name}.json"
        if not result.is_file():
            t0 = time.perf_counter()
            train = train_argv(variant, args.schedule, seed, args.steps, runs, args)
            if cli(train) != 0:
                raise SystemExit(f"training {name} failed")
            wall = time.perf_counter() - t0
            evaluate = eval_argv(variant, args.schedule, seed, runs, result, args.eval_repeats)
            if cli(evaluate) != 0:
                raise SystemExit(f"evaluating {name} failed")
            row = json.loads(result.read_text())
            run = runs / name
            state = json.loads((run / (run / "latest").read_text().strip() / "state.json").read_text())
            row.update(
                variant=variant,
                schedule=args.schedule,
                label=label(variant, args.schedule),
                seed=seed,
                steps=args.steps,
                train_wall_s=wall,
                loop_s=state["elapsed_s"],
                curve=state["history"],
                command="unetlab " + shlex.join(train) + " && unetlab " + shlex.join(evaluate),
            )
            write_atomic(result, json.dumps(row, indent=2) + "\n")
        elif json.loads(result.read_text())["repeats"] != args.eval_repeats:
            rescore(result, runs, args.eval_repeats, cli)
        # every finished run of every schedule in out-dir goes into one table
        rows = [json.loads(p.read_text()) for p in sorted((out_dir / "runs").glob("*.json"))]
        rows = [r for r in rows if "curve" in r]
        rows.sort(key=lambda r: (r["schedule"] != "fixed", list(VARIANTS).index(r["variant"]), r["seed"]))
        write_atomic(out_dir / "results.json", json.dumps(rows, indent=2) + "\n")
        table = summarise(rows, out_dir)
        write_atomic(out_dir / "table.md", table)
        write_atomic(out_dir / "runs.md", per_run(rows))
        write_atomic(out_dir / "paired.md", paired(rows))
    print(table)


if __name__ == "__main__":
    main()
