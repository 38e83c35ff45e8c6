"""The plain CoDi adapter (ControlNet baseline) under DDIM at several step counts, with the teacher scheduler's
`clip_sample=True` as the pipeline uses it, without clipping, and clipping with epsilon re-derived from the clipped
x_0 (`use_clipped_model_output=True`): same adapter, same initial noise, the first N sr4 test images.

    nice -n 5 .venv/bin/python benchmarks/codi_ddim_clip.py RUN/checkpoint-0001200/pipeline --limit 128

Prints one JSON line per (variant, steps): PSNR to the ground truth, condition PSNR, classifier accuracy, the mean
fraction of x_0 pixels outside [-1, 1] over the steps, and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import DDIMScheduler

from unetlab.codi import CoDiPipeline, adapted_unet, condition_consistency, heldout_conditions
from unetlab.data import DigitsDataset
from unetlab.eval import accuracy
from unetlab.metrics import mean_psnr

VARIANTS = {
    "clip (pipeline default)": {},
    "no clip": {"clip_sample": False},
    "clip, eps from the clipped x0": {"use_clipped_model_output": True},
}


@torch.no_grad()
def ddim(pipe, z, condition, steps, clip_sample=True, use_clipped_model_output=False):
    """DDIM as `CoDiPipeline` runs it, with the two clipping options exposed; (samples in [0, 1], clipped fraction)."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=clip_sample)
    scheduler.set_timesteps(steps)
    outside = []
    for timestep in scheduler.timesteps:
        t = torch.full((z.shape[0],), int(timestep), dtype=torch.long)
        output = adapted_unet(pipe.unet, pipe.adapter, z, t, condition)
        abar = scheduler.alphas_cumprod[int(timestep)]
        outside.append(float(((z - (1 - abar).sqrt() * output) / abar.sqrt()).abs().gt(1).float().mean()))
        z = scheduler.step(output, timestep, z, use_clipped_model_output=use_clipped_model_output).prev_sample
    return (z / 2 + 0.5).clamp(0, 1), sum(outside) / len(outside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", help="a controlnet-variant CoDiPipeline folder (sampler ddim)")
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 250])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = CoDiPipeline.from_pretrained(args.pipeline)
    test = DigitsDataset("test", pipe.unet.config.sample_size)
    images, labels = test.images[: args.limit], test.labels[: args.limit]
    condition = heldout_conditions("sr4", images, seed=0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(args.seed))
    for name, options in VARIANTS.items():
        for steps in args.steps:
            t0 = time.perf_counter()
            x, outside = ddim(pipe, noise.clone(), condition, steps, **options)
            print(
                json.dumps(
                    {
                        "variant": name,
                        "steps": steps,
                        "psnr": round(mean_psnr(x, images), 2),
                        "cond_psnr": round(condition_consistency("sr4", x, condition), 2),
                        "accuracy": round(accuracy("digits", x, labels)["accuracy"], 3),
                        "x0_outside": round(outside, 3),
                        "s": round(time.perf_counter() - t0),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
