"""VDMv vs DiffEnc-nt vs DiffEnc (trainable) on digits 8x8: train each with `unetlab train`, score with `unetlab eval bpd`.

Runs the real CLI in-process, sequentially, one seed of all three models after another (so a cut-short sweep stays
balanced); a run whose result JSON exists is skipped, so the sweep can be restarted. Writes results.json, table.md
and terms.png under --out-dir (mean ± standard error over seeds of each term, steps, wall time, the commands).

    nice -n 10 .venv/bin/python benchmarks/likelihood.py --steps 150 --seeds 0 1 2
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


def train_argv(variant: str, seed: int, steps: int, runs: Path) -> list[str]:
    return [
        "train",
        *VARIANTS[variant],
        "--data",
        "digits",
        "--size",
        "8",
        "--out",
        str(runs / f"{variant}-s{seed}"),
        "--steps",
        str(steps),
        "--batch-size",
        "32",
        "--lr",
        "2e-3",
        "--warmup",
        "20",
        "--ema-decay",
        "0.99",
        "--checkpoint-every",
        str(steps),
        "--channels",
        "32",
        "--blocks",
        "2",
        "--encoder-channels",
        "16",
        "--encoder-blocks",
        "1",
        "--sample-steps",
        "20",
        "--seed",
        str(seed),
        "--threads",
        "1",
        "--no-progress",
    ]


def eval_argv(variant: str, seed: int, runs: Path, result: Path) -> list[str]:
    return [
        "eval",
        "bpd",
        str(runs / f"{variant}-s{seed}"),
        "--data",
        "digits",
        "--size",
        "8",
        "--split",
        "test",
        "--repeats",
        "2",
        "--seed",
        "0",
        "--json",
        str(result),
    ]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def summarise(rows: list[dict], out_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "| model | seeds | steps | wall s: loop / with final sample+save (mean) | total bpd | reconstruction | prior | diffusion |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, variant in enumerate(VARIANTS):
        got = [r for r in rows if r["variant"] == variant]
        if not got:
            continue
        stats = {k: mean_se([r[k] for r in got]) for k in TERMS}
        wall = sum(r["train_wall_s"] for r in got) / len(got)
        loop = sum(r["loop_s"] for r in got) / len(got)
        cells = [
            f"{stats[k][0]:.4f} ± {stats[k][1]:.4f}"
            if k != "prior"
            else f"{stats[k][0]:.2e} ± {stats[k][1]:.1e}"
            for k in TERMS
        ]
        lines.append(
            f"| {variant} | {len(got)} | {got[0]['steps']} | {loop:.0f} / {wall:.0f} | "
            + " | ".join(cells)
            + " |"
        )
        for ax, k in zip(axes, ("total", "prior", "diffusion")):
            ax.bar(i, stats[k][0], yerr=0 if math.isnan(stats[k][1]) else stats[k][1], capsize=4)
            ax.plot([i] * len(got), [r[k] for r in got], "k.", ms=4)
    for ax, k in zip(axes, ("total", "prior", "diffusion")):
        ax.set_xticks(range(len(VARIANTS)), list(VARIANTS))
        ax.set_title(f"{k} (bits/dim)")
        ax.set_ylabel("bpd, test split, EMA weights")
        if k == "prior":
            ax.set_yscale("log")
    fig.suptitle("digits 8x8: mean ± s.e. over seeds (dots: seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "terms.png", dpi=120)
    plt.close(fig)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/likelihood", help="training folders")
    parser.add_argument("--out-dir", default="docs/likelihood", help="results.json, table.md, terms.png")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from unetlab.cli import main as cli

    torch.set_num_threads(1)
    runs, out_dir = Path(args.runs), Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = [(seed, variant) for seed in args.seeds for variant in VARIANTS]
    for seed, variant in tqdm(jobs, desc="likelihood runs"):
        result = out_dir / "runs" / f"{variant}-s{seed}.json"
        if not result.is_file():
            result.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            if cli(train_argv(variant, seed, args.steps, runs)) != 0:
                raise SystemExit(f"training {variant} seed {seed} failed")
            wall = time.perf_counter() - t0
            if cli(eval_argv(variant, seed, runs, result)) != 0:
                raise SystemExit(f"evaluating {variant} seed {seed} failed")
            row = json.loads(result.read_text())
            run = runs / f"{variant}-s{seed}"
            state = json.loads((run / (run / "latest").read_text().strip() / "state.json").read_text())
            row.update(
                variant=variant,
                seed=seed,
                steps=args.steps,
                train_wall_s=wall,
                loop_s=state["elapsed_s"],
                command="unetlab "
                + shlex.join(train_argv(variant, seed, args.steps, runs))
                + " && unetlab "
                + shlex.join(eval_argv(variant, seed, runs, result)),
            )
            write_atomic(result, json.dumps(row, indent=2) + "\n")
        rows.append(json.loads(result.read_text()))
        write_atomic(out_dir / "results.json", json.dumps(rows, indent=2) + "\n")
        table = summarise(rows, out_dir)
        write_atomic(out_dir / "table.md", table)
    print(table)


if __name__ == "__main__":
    main()
