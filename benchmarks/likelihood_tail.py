"""How precise is the convergence criterion? The tracked curve's change scored with one pass against many.

`benchmarks/likelihood.py` judges convergence from the training curve: the EMA model's test bound at each
checkpoint, one pass with the same noise (seed 0). For every run of its results.json this scores two checkpoints
with `--repeats` passes, pass r with seed r at both (common random numbers), and compares the change between them:
pass 0 reproduces the curve (checked), the mean over passes is the change of the bound itself, and the spread of
the single-pass changes is the evaluation noise a one-pass curve carries over that stretch of training.
`--span last`: the two kept checkpoints (the curve's last two points). `--span fifth`: the criterion's own span,
from the checkpoint nearest 0.8·end to the end; training keeps only its last two checkpoints, so the run is
trained again with its own command into --redo until that checkpoint is written (the same seed gives the same
weights, checked against the curve). Writes tail-<span>.json and tail-<span>.md under --out-dir; each run's result
is kept under --out-dir/tail/, so an interrupted call restarts where it stopped.

    nice -n 10 .venv/bin/python benchmarks/likelihood_tail.py --results runs/f4-43k-docs/results.json \
        --runs runs/f4-43k --repeats 50 --out-dir runs/f4-43k-docs
    nice -n 10 .venv/bin/python benchmarks/likelihood_tail.py --span fifth --only DiffEnc-nt-s1 ... \
        --results runs/f4-43k-docs/results.json --runs runs/f4-43k --redo runs/f4-43k-redo --out-dir runs/f4-43k-docs
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import likelihood  # benchmarks/likelihood.py, beside this script
import torch
from likelihood import TOLERANCE, cell, mean_se, write_atomic
from tqdm.auto import tqdm

from unetlab.data import dataset
from unetlab.likelihood import load_model
from unetlab.vdm import evaluate_bpd, images_to_x


def run_name(row: dict) -> str:
    """The training folder's name of a results.json row."""
    return likelihood.run_name(row["variant"], row["schedule"], row["seed"])


def checkpoint_totals(folder: Path, x: torch.Tensor, repeats: int) -> list[float]:
    """The EMA model's test bound at the checkpoint ``folder``, pass r scored with noise seed r."""
    model, _ = load_model(folder / "pipeline")
    model.eval()
    return [evaluate_bpd(model, x, torch.Generator().manual_seed(r))["total"] for r in range(repeats)]


def retrain_to(row: dict, step: int, redo: Path) -> Path:
    """Train the run again with its own command into ``redo`` and stop once checkpoint ``step`` is written."""
    out = redo / run_name(row)
    folder = out / f"checkpoint-{step:07d}"
    if (out / "latest").is_file() and folder.is_dir():
        return folder
    if out.exists():
        raise SystemExit(f"--redo: {out} holds an unfinished re-run; remove it to train again")
    argv = shlex.split(row["command"].split(" && ")[0])[1:]
    argv[argv.index("--out") + 1] = str(out)
    command = [sys.executable, "-c", "import sys; from unetlab.cli import main; sys.exit(main())", *argv]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL) as proc:
        while proc.poll() is None:
            latest = out / "latest"
            if latest.is_file():
                history = json.loads((out / latest.read_text().strip() / "state.json").read_text())["history"]
                off = max(abs(h["eval_total"] - c["eval_total"]) for h, c in zip(history, row["curve"]))
                if off > 1e-5 or history[-1]["step"] >= step:
                    proc.terminate()
                    if off > 1e-5:
                        raise SystemExit(
                            f"re-training {run_name(row)}: its curve is {off:.2e} bpd off the original's "
                            "(the code has changed since the run)"
                        )
                    break
            time.sleep(2)
    if proc.returncode not in (0, -15) or not folder.is_dir():
        raise SystemExit(f"re-training {run_name(row)} failed (exit {proc.returncode}) before step {step}")
    return folder


def tail_change(row: dict, span: str, runs: Path, redo: Path, x: torch.Tensor, repeats: int) -> dict:
    """Relative change of the bound over ``span`` of training: from one pass (the curve) and from ``repeats``."""
    curve, name = row["curve"], run_name(row)
    after = curve[-1]
    if span == "last":
        before = curve[-2]
        start = runs / name / f"checkpoint-{before['step']:07d}"
    else:
        before = min(curve, key=lambda c: abs(c["step"] - 0.8 * after["step"]))
        start = retrain_to(row, before["step"], redo)
    a = checkpoint_totals(start, x, repeats)
    b = checkpoint_totals(runs / name / f"checkpoint-{after['step']:07d}", x, repeats)
    off = max(abs(a[0] - before["eval_total"]), abs(b[0] - after["eval_total"]))
    if off > 1e-5:
        raise SystemExit(f"{name}: pass 0 is {off:.2e} bpd off the curve, so these are not the curve's models")
    changes = [(bj - aj) / bj for aj, bj in zip(a, b)]
    return {
        "run": name,
        "label": row["label"],
        "seed": row["seed"],
        "from": before["step"],
        "to": after["step"],
        "repeats": repeats,
        "curve_change": (after["eval_total"] - before["eval_total"]) / after["eval_total"],
        "pass0_off_curve": off,
        "change": statistics.fmean(changes),
        "change_se": statistics.stdev(changes) / math.sqrt(repeats),
        "single_pass_sd": statistics.stdev(changes),
    }


def verdict(change: float) -> str:
    return "yes" if abs(change) < TOLERANCE else "NO"


def table(results: list[dict]) -> str:
    lines = [
        "| model | seed | steps | change, curve (1 pass) | change, mean of passes ± s.e. | sd of a 1-pass change "
        "| passes | < 0.5%: curve / passes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['seed']} | {r['from']} → {r['to']} | {100 * r['curve_change']:+.3f}% "
            f"| {100 * r['change']:+.3f}% ± {100 * r['change_se']:.3f}% | {100 * r['single_pass_sd']:.3f}% "
            f"| {r['repeats']} | {verdict(r['curve_change'])} / {verdict(r['change'])} |"
        )
    sd, se = mean_se([r["single_pass_sd"] for r in results])
    gap, gap_se = mean_se([abs(r["curve_change"] - r["change"]) for r in results])
    lines += [
        "",
        f"Over all {len(results)} runs: sd of a one-pass change {cell(100 * sd, 100 * se, '.3f')}%; "
        f"|curve change − mean change| {cell(100 * gap, 100 * gap_se, '.3f')}% (mean ± s.e. over runs); "
        f"pass 0 is the curve within {max(r['pass0_off_curve'] for r in results):.1e} bpd.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", default="docs/likelihood/43200/results.json", help="benchmarks/likelihood.py output"
    )
    parser.add_argument("--runs", default="runs/likelihood", help="its training folders")
    parser.add_argument("--repeats", type=int, default=50, help="passes of fresh noise per checkpoint (>= 2)")
    parser.add_argument(
        "--span",
        choices=("last", "fifth"),
        default="last",
        help="last: the two kept checkpoints; fifth: the criterion's last fifth (re-trains to its start)",
    )
    parser.add_argument("--redo", default="runs/likelihood-redo", help="--span fifth: folder of the re-runs")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="these runs of --results (folder names) only")
    parser.add_argument("--out-dir", default="docs/likelihood")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats: {args.repeats} must be >= 2 (the spread needs two passes)")
    torch.set_num_threads(1)
    rows = json.loads(Path(args.results).read_text())
    if args.only:
        unknown = sorted(set(args.only) - {run_name(r) for r in rows})
        if unknown:
            parser.error(f"--only: {', '.join(unknown)} not among the runs of {args.results}")
        rows = [r for r in rows if run_name(r) in args.only]
    if not rows:
        parser.error(f"--results: {args.results} holds no runs")
    data = dataset("digits", "test", 8)
    x = images_to_x(data[torch.arange(len(data))]["images"])
    out_dir = Path(args.out_dir)
    (out_dir / "tail").mkdir(parents=True, exist_ok=True)
    results = []
    for row in tqdm(rows, desc="runs"):
        cached = out_dir / "tail" / f"{run_name(row)}-{args.span}-r{args.repeats}.json"
        if not cached.is_file():
            result = tail_change(row, args.span, Path(args.runs), Path(args.redo), x, args.repeats)
            write_atomic(cached, json.dumps(result, indent=1))
        results.append(json.loads(cached.read_text()))
    write_atomic(out_dir / f"tail-{args.span}.json", json.dumps(results, indent=1))
    write_atomic(out_dir / f"tail-{args.span}.md", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
