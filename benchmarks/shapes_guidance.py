"""Guidance sweep of the shipped `shapes` model: attribute accuracy of held-out captions per guidance scale,
with the pipeline's DDIM step (x0 clipped, noise re-derived: `use_clipped_model_output=True`) and, for
comparison, diffusers' DDIM default (noise not re-derived) and DDIM without x0 clipping.

    .venv/bin/python benchmarks/shapes_guidance.py --num-samples 100 --json docs/shapes_guidance.json
"""

from __future__ import annotations

import argparse
import functools
import json

import torch
from diffusers import DDIMScheduler

import unetlab
from unetlab.bench.quality import sample
from unetlab.data.shapes import heldout_captions
from unetlab.eval import accuracy

VARIANTS = (
    "clipped x0, noise re-derived (pipeline default)",
    "clipped x0, noise not re-derived (diffusers DDIM default)",
    "no x0 clipping",
)


def sampler(variant: str):
    """The shipped shapes pipeline, called the way `variant` names."""
    pipe = unetlab.load("shapes")
    pipe.set_progress_bar_config(disable=True)
    if variant == VARIANTS[1]:
        return functools.partial(pipe, use_clipped_model_output=False)
    if variant == VARIANTS[2]:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    return pipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--guidance", default="1,2,3,5,7.5,10", help="comma-separated guidance scales")
    p.add_argument("--compare-at", type=float, default=5.0, help="guidance scale of the three-variant comparison")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    prompts = heldout_captions(args.num_samples, seed=0)
    runs = [(VARIANTS[0], float(g)) for g in args.guidance.split(",")]
    runs += [(v, args.compare_at) for v in VARIANTS[1:]]
    rows = []
    for variant, g in runs:
        images = sample(sampler(variant), "shapes", args.num_samples, 50, g, 250, 0, prompts)
        acc = {k: round(float(v), 4) for k, v in accuracy("shapes", images, prompts).items()}
        rows.append({"variant": variant, "guidance_scale": g, **acc})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        result = {"num_samples": args.num_samples, "ddim_steps": 50, "threads": args.threads, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
