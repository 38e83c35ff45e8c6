"""`mini-sd`'s bars and whether its judges separate few from many DDIM steps.

Runs `unetlab eval quality` on `mini-sd` (or a pipeline folder) at each of --steps (default 50 and 10; same
captions and seeds), writes each result as JSON and a Markdown table: every score's mean ± s.e. over seeds, and
the difference between the first and each other step count in units of its standard error
(sqrt(se_a^2 + se_b^2)).
Usage: python benchmarks/mini_sd_quality.py --out docs/mini-sd [--model FOLDER] [--steps 50 10] [--seeds 3]
"""

import argparse
import json
import math
from pathlib import Path

import torch

from unetlab.bench.quality import measure_model

SHOWN = (
    "all_correct",
    "all_correct_1obj",
    "all_correct_2obj",
    "all_correct_3obj",
    "shape",
    "colour",
    "size",
    "count",
    "position",
    "relation",
    "background_colour",
    "texture",
    "frechet",
)


def table(results: list[dict]) -> str:
    """Scores per step count (mean ± s.e. over seeds) and each difference to the first, in standard errors."""
    head = [
        "score",
        *(f"DDIM-{r['steps']}" for r in results),
        *(f"{results[0]['steps']} − {r['steps']} (s.e.)" for r in results[1:]),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in SHOWN:
        cells = [f"{r['scores'][key]['mean']:.4f} ± {r['scores'][key]['se']:.4f}" for r in results]
        a = results[0]["scores"][key]
        for r in results[1:]:
            b = r["scores"][key]
            se = math.hypot(a["se"], b["se"])
            cells.append(f"{a['mean'] - b['mean']:+.4f} ({(a['mean'] - b['mean']) / se:+.1f})" if se else "—")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default="mini-sd")
    p.add_argument("--steps", type=int, nargs="+", default=[50, 10])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--num-captions", type=int, default=500)
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for steps in args.steps:
        path = args.out / f"quality_ddim{steps}.json"
        results.append(
            measure_model(
                args.model,
                num_captions=args.num_captions,
                steps=steps,
                guidance_scale=args.guidance_scale,
                seeds=args.seeds,
                json_path=path,
                grid_path=args.out / f"samples_ddim{steps}.png",
            )
        )
        print(json.dumps(results[-1]["scores"]["all_correct"]), flush=True)
    real = results[0]["real"]
    text = (
        f"{args.num_captions} test-split captions x {args.seeds} seeds, guidance {args.guidance_scale}; "
        f"the judge on the real scenes of those captions: all correct {real['all_correct']:.4f}; real "
        f"train-vs-test Fréchet distance {results[0]['train_test_frechet']:.3f}.\n\n{table(results)}\n"
    )
    (args.out / "quality.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
