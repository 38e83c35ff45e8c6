"""Sampling quality of the likelihood models: does a better bound cost worse samples?

For every run of `benchmarks/likelihood.py` (the EMA model of its last checkpoint): ancestral samples at each
`--steps`, scored by the shipped digit classifier (8x8 samples upsampled to 16x16 exactly as the 16x16 digits
are): the confident fraction (max probability >= 0.9), the classes present, and the Fréchet distance in the
classifier's feature space to the test split. The same numbers for `--num-samples` real training images give the
floor at that sample size. Writes samples.json, samples.md and one sample grid per model under --out-dir; each
(run, steps) result is kept under --out-dir/samples/, so an interrupted sweep restarts where it stopped, and
runs not yet finished in --results are picked up by a later call.

    nice -n 10 .venv/bin/python benchmarks/likelihood_samples.py --steps 100 1000 --num-samples 200 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from likelihood import run_name  # benchmarks/likelihood.py, beside this script

from unetlab.commands.likelihood import model_dir
from unetlab.data import load_digits
from unetlab.eval import accuracy, frechet_distance
from unetlab.likelihood import load_model
from unetlab.train.grid import save_grid
from unetlab.vdm import ancestral_sample


def to_classifier(x: torch.Tensor) -> torch.Tensor:
    """Data in [−1, 1] at 8x8 → images in [0, 1] at 16x16 (the upsampling of `unetlab.data.load_digits`)."""
    images = ((x + 1) / 2).clamp(0, 1)
    return F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False, antialias=False).clamp(0, 1)


def score(images: torch.Tensor) -> dict:
    acc = accuracy("digits", images)
    return {
        "confident": acc["confident"],
        "classes_present": acc["classes_present"],
        "frechet": frechet_distance("digits", images),
    }


def mean_se(values: list[float]) -> str:
    m = sum(values) / len(values)
    if len(values) < 2:
        return f"{m:.3f}"
    se = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))
    return f"{m:.3f} ± {se:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", default="docs/likelihood/43200/results.json", help="benchmarks/likelihood.py output"
    )
    parser.add_argument("--runs", default="runs/likelihood", help="its training folders")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds whose models are sampled")
    parser.add_argument("--out-dir", default="docs/likelihood")
    args = parser.parse_args()
    if args.num_samples < 2 or min(args.steps) < 1:
        parser.error("--num-samples must be >= 2 and every --steps >= 1")
    torch.set_num_threads(1)
    out_dir = Path(args.out_dir)
    rows = json.loads(Path(args.results).read_text())
    real = load_digits("train", 16)[0]
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: args.num_samples]
    floor = score(real[pick])
    results = []
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    for row in [r for r in rows if r["seed"] in args.seeds]:
        name = run_name(row["variant"], row["schedule"], row["seed"])
        model, cfg = load_model(model_dir(Path(args.runs) / name))
        model.eval()
        for steps in args.steps:
            cached = out_dir / "samples" / f"{name}-{steps}-n{args.num_samples}.json"
            if not cached.is_file():
                t0 = time.perf_counter()
                x = ancestral_sample(model, (args.num_samples, 1, 8, 8), steps, torch.Generator().manual_seed(1))
                seconds = time.perf_counter() - t0
                result = {
                    "label": row["label"],
                    "seed": row["seed"],
                    "run": name,
                    "steps": steps,
                    "num_samples": args.num_samples,
                    "seconds": seconds,
                    **score(to_classifier(x)),
                }
                if steps == max(args.steps):
                    save_grid(((x[:64] + 1) / 2).clamp(0, 1), out_dir / "samples" / f"{name}.png", nrow=8)
                tmp = cached.with_name(f".tmp-{os.getpid()}-{cached.name}")
                tmp.write_text(json.dumps(result, indent=2) + "\n")
                os.replace(tmp, cached)
            results.append(json.loads(cached.read_text()))
            print(results[-1], flush=True)
    lines = [
        f"{args.num_samples} ancestral samples per run and step count, scored by the shipped digit classifier "
        f"(mean ± s.e. over seeds). Real training images at the same sample size: confident "
        f"{floor['confident']:.3f}, Fréchet distance to the test split {floor['frechet']:.2f}.",
        "",
        "| model | ancestral steps | seeds | confident fraction | classes present (min) | Fréchet distance "
        "| s per sample |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in dict.fromkeys(r["label"] for r in results):
        for steps in args.steps:
            got = [r for r in results if r["label"] == label and r["steps"] == steps]
            if got:
                seconds = sum(r["seconds"] / r["num_samples"] for r in got) / len(got)
                lines.append(
                    f"| {label} | {steps} | {len(got)} | {mean_se([r['confident'] for r in got])} | "
                    f"{min(r['classes_present'] for r in got)} | {mean_se([r['frechet'] for r in got])} "
                    f"| {seconds:.3f} |"
                )
    for name, text in (
        ("samples.json", json.dumps({"real": floor, "runs": results}, indent=2) + "\n"),
        ("samples.md", "\n".join(lines) + "\n"),
    ):
        tmp = out_dir / f".tmp-{os.getpid()}-{name}"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
