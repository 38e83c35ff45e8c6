"""The final test bound of each `benchmarks/likelihood.py` sweep against its training length: is the bound still moving?

Reads the results.json of several sweeps (each with one `--steps`), plots each model's bound (mean ± s.e. over
seeds, dots: seeds) against the steps and writes lengths.png and lengths.md (one row per model and length, then the
change against the model's shortest run, paired by seed).

    .venv/bin/python benchmarks/likelihood_lengths.py runs/conv-docs/results.json runs/conv32-docs/results.json \
        --out-dir docs/likelihood
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from likelihood import cell, mean_se, signed, write_atomic, write_figure  # benchmarks/likelihood.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json files of benchmarks/likelihood.py")
    parser.add_argument("--out-dir", default="docs/likelihood")
    args = parser.parse_args()
    rows = [r for path in args.results for r in json.loads(Path(path).read_text())]
    if not rows:
        parser.error("results: the files hold no runs")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = ["| model | steps | seeds | total bpd (mean ± s.e.) | per seed |", "| --- | --- | --- | --- | --- |"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(labels):
        lengths = sorted({r["steps"] for r in rows if r["label"] == name})
        means, ses = [], []
        for steps in lengths:
            got = sorted((r for r in rows if r["label"] == name and r["steps"] == steps), key=lambda r: r["seed"])
            m, se = mean_se([r["total"] for r in got])
            means.append(m)
            ses.append(0 if math.isnan(se) else se)
            ax.plot([steps] * len(got), [r["total"] for r in got], ".", color=f"C{i}", ms=4)
            per_seed = ", ".join(f"s{r['seed']} {r['total']:.4f}" for r in got)
            lines.append(f"| {name} | {steps} | {len(got)} | {cell(m, se, '.4f')} | {per_seed} |")
        ax.errorbar(
            lengths,
            means,
            yerr=ses,
            color=f"C{i}",
            marker="o",
            capsize=3,
            label=name,
            ls="-" if "learned" not in name else "--",
        )
    lines += [
        "",
        "Change against each model's shortest run, paired by seed:",
        "",
        "| model | steps | seeds | change of the total (bpd) | relative |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in labels:
        by = {(r["steps"], r["seed"]): r["total"] for r in rows if r["label"] == name}
        lengths = sorted({steps for steps, _ in by})
        for steps in lengths[1:]:
            seeds = [s for (n, s) in by if n == steps and (lengths[0], s) in by]
            if seeds:
                m, se = mean_se([by[steps, s] - by[lengths[0], s] for s in seeds])
                rel, rel_se = mean_se([by[steps, s] / by[lengths[0], s] - 1 for s in seeds])
                lines.append(
                    f"| {name} | {lengths[0]} → {steps} | {len(seeds)} | {signed(m, se, '.4f')} "
                    f"| {signed(100 * rel, 100 * rel_se, '.2f')}% |"
                )
    ax.set_xlabel("optimiser steps of the run (cosine decay to 0 over the run)")
    ax.set_ylabel("final bpd, test split, EMA weights")
    ax.set_title("digits 8x8: final bound against training length")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_figure(fig, out / "lengths.png")
    write_atomic(out / "lengths.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
