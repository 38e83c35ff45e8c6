"""Branch caching and clockwork vs the DeepCache and ToMe packages on CPU, through the normal `pipe(...)` call.

SD-1.5-shaped UNet with channels (32, 64, 128, 128) (`sd15_like(scale=10)`), cross-attention 768, random
weights, a real `StableDiffusionPipeline` with a real `DDIMScheduler` (SD's scaled-linear betas), guidance on
(UNet batch 2), prompt embeddings given (no text encoder), `output_type="latent"` (no VAE decode).
Wall time: alternating repeats in one run (the variant order rotates every repeat), each repeat's ratio to
that repeat's baseline, median over repeats. FLOPs: one call per variant under `torch.utils.flop_counter`.
Random weights: these are speed figures only; quality is measured on trained models by `unetlab bench`.

    nice -n 10 .venv/bin/python benchmarks/branch_cache.py --size 32 --steps 50 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from tqdm import tqdm

import unetlab
from unetlab.accel import peers
from unetlab.unet import configs, count_flops

VARIANTS = {
    "baseline": lambda pipe: nullcontext(),
    **{f"branch_cache N={n} B={b}": (lambda pipe, n=n, b=b: unetlab.branch_cache(pipe, interval=n, branch=b))
       for b in (0, 1) for n in (2, 3, 4, 5)},
    "clockwork clock=2 (level 1)": lambda pipe: unetlab.clockwork(pipe, clock=2),
    "clockwork clock=3 level=2": lambda pipe: unetlab.clockwork(pipe, clock=3, level=2),
    "DeepCache pkg N=3 B=0": lambda pipe: peers.deepcache(pipe, interval=3, branch=0),
    "tomesd ratio=0.5": lambda pipe: peers.tome(pipe, ratio=0.5),
}


def build_pipe() -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = configs.sd15_like(scale=10).eval()
    # the VAE only sets the latent scale factor (8); it is never run (output_type="latent")
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, latent_channels=4)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_once(pipe, size: int, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 77, 768, generator=g), torch.randn(1, 77, 768, generator=g)
    with torch.no_grad():
        return pipe(prompt_embeds=pos, negative_prompt_embeds=neg, guidance_scale=7.5, num_inference_steps=steps,
                    height=8 * size, width=8 * size, output_type="latent", generator=g).images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="latent size (64 = SD 1.5 at 512 px)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="variant names to run (baseline is always run)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ["baseline"] + [n for n in VARIANTS if n != "baseline" and (not args.only or n in args.only)]
    pipe = build_pipe()

    flops, latents, unsupported = {}, {}, {}
    for name in tqdm(list(names), desc="FLOPs (one call each)"):
        try:
            with VARIANTS[name](pipe):
                flops[name] = count_flops(lambda: latents.__setitem__(name, run_once(pipe, args.size, args.steps)))[0]
        except peers.UnsupportedPeerError as e:
            unsupported[name] = str(e)
            names.remove(name)

    times = {n: [] for n in names}
    with tqdm(total=args.repeats * len(names), desc="alternating timed calls") as bar:
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                with VARIANTS[name](pipe):
                    t0 = time.perf_counter()
                    run_once(pipe, args.size, args.steps)
                    times[name].append(time.perf_counter() - t0)
                bar.update()

    base = latents["baseline"]
    rows = []
    for name in names:
        ratios = [b / t for b, t in zip(times["baseline"], times[name])]
        diff = (latents[name] - base).abs().max().item()
        rows.append(dict(variant=name, seconds=statistics.median(times[name]), speedup_wall=statistics.median(ratios),
                         speedup_flops=flops["baseline"] / flops[name], gflops=flops[name] / 1e9,
                         max_abs_latent_diff=diff))
    print(f"\nsd15_like(scale=10), {args.size}x{args.size} latent, DDIM-{args.steps}, guidance 7.5 (batch 2), "
          f"{args.threads} thread(s), {args.repeats} alternating repeats, {os.cpu_count()}-core {platform.machine()}\n")
    print("| variant | s / call (median) | wall speed-up (median ratio) | UNet GFLOPs / call | FLOPs speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.1f} | {r['speedup_wall']:.2f}x | {r['gflops']:.0f} | "
              f"{r['speedup_flops']:.2f}x |")
    for name, why in unsupported.items():
        print(f"| {name} | unsupported: {why} | | | |")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(args=vars(args), rows=rows, unsupported=unsupported, times=times), f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
