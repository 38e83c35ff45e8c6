"""Branch caching and clockwork vs the DeepCache and ToMe packages on CPU, through the normal `pipe(...)` call.

SD-1.5-shaped UNet with channels (32, 64, 128, 128) (`sd15_like(scale=10)`), cross-attention 768, random
weights, a real `StableDiffusionPipeline` with a real `DDIMScheduler` (SD's scaled-linear betas), guidance on
(UNet batch 2), prompt embeddings given (no text encoder), `output_type="latent"` (no VAE decode).
Wall time: alternating repeats in one run (the variant order rotates every repeat), each repeat's ratio to
that repeat's baseline, median over repeats. FLOPs: `torch.utils.flop_counter` on a call of one schedule
period (one full step, P - 1 cheap ones), scaled to the step count.
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
from tqdm import tqdm

import unetlab
from unetlab.accel import peers
from unetlab.bench.workload import sd15_random_pipeline
from unetlab.unet import count_flops

# name -> (apply(pipe) -> context manager, period P: one full UNet step then P - 1 cheap steps, repeated)
VARIANTS = {
    "baseline": (lambda pipe: nullcontext(), 1),
    **{
        f"branch_cache N={n} B=0": (lambda pipe, n=n: unetlab.branch_cache(pipe, interval=n, branch=0), n)
        for n in (2, 3, 5)
    },
    **{
        f"branch_cache N={n} B=1": (lambda pipe, n=n: unetlab.branch_cache(pipe, interval=n, branch=1), n)
        for n in (3, 5)
    },
    "branch_cache layer N=3 B=0": (
        lambda pipe: unetlab.branch_cache(pipe, interval=3, branch=0, granularity="layer"),
        3,
    ),
    "clockwork clock=2 (level 1)": (lambda pipe: unetlab.clockwork(pipe, clock=2), 2),
    "DeepCache pkg N=3 B=0": (lambda pipe: peers.deepcache(pipe, interval=3, branch=0), 3),
    "tomesd ratio=0.5": (lambda pipe: peers.tome(pipe, ratio=0.5), 1),
}


def run_once(pipe, size: int, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 77, 768, generator=g), torch.randn(1, 77, 768, generator=g)
    with torch.no_grad():
        return pipe(
            prompt_embeds=pos,
            negative_prompt_embeds=neg,
            guidance_scale=7.5,
            num_inference_steps=steps,
            height=8 * size,
            width=8 * size,
            output_type="latent",
            generator=g,
        ).images


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
    pipe = sd15_random_pipeline()

    # FLOPs: a call of P steps holds one full and P - 1 cheap UNet steps; a call of S steps holds
    # ceil(S / P) full ones. Counting P-step calls is exact for these periodic schedules and far cheaper.
    step_flops, unsupported = {}, {}
    for name in tqdm(list(names), desc="FLOPs (one schedule period each)"):
        apply, period = VARIANTS[name]
        try:
            with apply(pipe):
                f_period = count_flops(lambda p=period: run_once(pipe, args.size, p))[0]
        except peers.UnsupportedPeerError as e:
            unsupported[name] = str(e)
            names.remove(name)
            continue
        if period == 1:
            step_flops[name] = (f_period, f_period)
        else:  # the full steps are the plain forward
            f_full = step_flops["baseline"][0]
            step_flops[name] = (f_full, (f_period - f_full) / (period - 1))
    flops = {}
    for name, (f_full, f_cheap) in step_flops.items():
        n_full = -(-args.steps // VARIANTS[name][1])
        flops[name] = n_full * f_full + (args.steps - n_full) * f_cheap

    times = {n: [] for n in names}
    with tqdm(total=args.repeats * len(names), desc="alternating timed calls") as bar:
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                with VARIANTS[name][0](pipe):
                    t0 = time.perf_counter()
                    run_once(pipe, args.size, args.steps)
                    times[name].append(time.perf_counter() - t0)
                bar.update()
            report(args, names, times, flops, unsupported)  # after every repeat, so a cut-short run still reports


def report(args, names, times, flops, unsupported) -> None:
    rows = []
    for name in names:
        ratios = [b / t for b, t in zip(times["baseline"], times[name])]
        rows.append(
            dict(
                variant=name,
                seconds=statistics.median(times[name]),
                speedup_wall=statistics.median(ratios),
                speedup_flops=flops["baseline"] / flops[name],
                gflops=flops[name] / 1e9,
            )
        )
    print(
        f"\nsd15_like(scale=10), {args.size}x{args.size} latent, DDIM-{args.steps}, guidance 7.5 (batch 2), "
        f"{args.threads} thread(s), {len(times['baseline'])} alternating repeats, {os.cpu_count()}-core "
        f"{platform.machine()}\n"
    )
    print("| variant | s / call (median) | wall speed-up (median ratio) | UNet GFLOPs / call | FLOPs speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['variant']} | {r['seconds']:.1f} | {r['speedup_wall']:.2f}x | {r['gflops']:.0f} | "
            f"{r['speedup_flops']:.2f}x |"
        )
    for name, why in unsupported.items():
        print(f"| {name} | unsupported: {why} | | | |", flush=True)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(args=vars(args), rows=rows, unsupported=unsupported, times=times), f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
