"""Encoder propagation speed on CPU: baseline vs sequential vs parallel vs every-step-key, through `pipe(...)`.

SD-1.5-shaped UNet with channels (32, 64, 128, 128) (`sd15_like(scale=10)`), cross-attention 768, random
weights, a real `StableDiffusionPipeline` with a real `DDIMScheduler`, guidance on (batch 2), prompt embeddings
given (no text encoder), `output_type="latent"` (no VAE decode). Wall time: alternating repeats in one run,
per-repeat ratio to that repeat's baseline, median. FLOPs: one full call per variant under
`torch.utils.flop_counter` (that call is also the warm-up). Peak memory: resident-set growth during a call,
sampled every 2 ms, with glibc's mmap threshold fixed so freed tensors return to the OS. Wall time is what
the issue asks for; process CPU time is also given because the 2-core machine is shared.

    .venv/bin/python benchmarks/encoder_propagation.py --size 32 --steps 20 --keys 0,1,2,3,5,10,15 --repeats 9
    .venv/bin/python benchmarks/encoder_propagation.py --size 64 --steps 50 --keys paper --flops composed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

import unetlab
from unetlab.bench.workload import sd15_random_pipeline
from unetlab.schedules import resolve
from unetlab.unet import count_flops, decode, encode

VARIANTS = ("baseline", "sequential", "parallel", "all_key")


def handle_for(pipe, variant: str, keys):
    if variant == "baseline":
        return nullcontext()
    if variant == "all_key":
        return unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None)
    return unetlab.encoder_propagation(pipe, key_steps=keys, parallel=variant == "parallel")


def run_once(pipe, variant: str, keys, size: int, steps: int) -> tuple[float, float, int]:
    """One pipeline call; returns (wall s, process CPU s, peak RSS growth in bytes during the call)."""
    g = torch.Generator().manual_seed(0)
    prompt, negative = torch.randn(1, 77, 768, generator=g), torch.randn(1, 77, 768, generator=g)
    with handle_for(pipe, variant, keys), torch.inference_mode(), RssPeak() as rss:
        wall, cpu = time.perf_counter(), time.process_time()
        pipe(
            prompt_embeds=prompt,
            negative_prompt_embeds=negative,
            num_inference_steps=steps,
            height=8 * size,
            width=8 * size,
            guidance_scale=7.5,
            output_type="latent",
            generator=torch.Generator().manual_seed(1),
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, rss.peak


class RssPeak:
    """Peak resident-set growth during a block, sampled every 2 ms from /proc/self/statm by a thread."""

    def __enter__(self):
        self.base = self.peak_rss = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak_rss = max(self.peak_rss, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak_rss, _rss()) - self.base


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def composed_flops(unet, size: int, steps: int, keys) -> dict[str, float]:
    """FLOPs of each variant from one full UNet call and decoder batches (no max_parallel; DDIM: 1 call per step)."""
    keys = resolve(keys, steps)
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 4, size, size, generator=g), torch.randn(2, 77, 768, generator=g)
    full, _ = count_flops(lambda: unet(x, 500, encoder_hidden_states=c))
    state = encode(unet, x, 500, encoder_hidden_states=c)
    dec = {}
    chunks = [b - a for a, b in zip(keys, (*keys[1:], steps))]
    for k in sorted(set(chunks) | {1}):
        dec[k], _ = count_flops(lambda k=k: decode(unet, state, [500] * k))
    encoder = full - dec[1]
    return {
        "baseline": steps * full,
        "sequential": len(keys) * full + (steps - len(keys)) * dec[1],
        "parallel": sum(encoder + dec[k] for k in chunks),
        "all_key": steps * full,
    }


def _keys(text: str):
    return text if not text[0].isdigit() else [int(k) for k in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="latent size (32 or 64)")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps")
    ap.add_argument("--keys", default="0,1,2,3,5,10,15", help="key-step spec: a name or comma-separated steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads (default: torch's default here, %(default)s)",
    )
    ap.add_argument("--channels-last", action="store_true", help="UNet in channels_last (all variants)")
    ap.add_argument(
        "--flops",
        choices=("counted", "composed"),
        default="counted",
        help="count whole calls (exact, one extra call per variant) or compose them from one UNet call "
        "and the decoder batches (exact for DDIM, cheap)",
    )
    ap.add_argument("--skip-all-key", action="store_true", help="leave out the every-step-key variant")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":  # freed tensors go back to the OS: RSS peaks are per call
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    torch.set_num_threads(args.threads)
    keys = _keys(args.keys)
    pipe = sd15_random_pipeline()
    if args.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    print(
        f"size {args.size}x{args.size}, DDIM-{args.steps}, keys {keys}, threads {args.threads}, "
        f"channels_last {args.channels_last}",
        flush=True,
    )
    variants = VARIANTS if not args.skip_all_key else VARIANTS[:3]
    composed = composed_flops(pipe.unet, args.size, args.steps, keys)
    print(
        "FLOPs composed from one UNet call and the decoder batches:",
        {v: f"{f / 1e9:.1f} G" for v, f in composed.items()},
        flush=True,
    )
    if args.flops == "counted":
        flops = {}
        for v in tqdm(variants, desc="FLOPs (one counted call each, also the warm-up)"):
            flops[v], _ = count_flops(lambda v=v: run_once(pipe, v, keys, args.size, args.steps))
        print("FLOPs counted over whole calls:", {v: f"{f / 1e9:.1f} G" for v, f in flops.items()}, flush=True)
    else:
        flops = composed
        run_once(pipe, "baseline", keys, args.size, min(3, args.steps))  # warm-up
    runs = {v: [] for v in variants}
    for r in tqdm(range(args.repeats), desc="alternating repeats"):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            runs[v].append(run_once(pipe, v, keys, args.size, args.steps))
            tqdm.write(
                f"repeat {r} {v:<11} wall {runs[v][-1][0]:8.2f} s  CPU {runs[v][-1][1]:8.2f} s  "
                f"peak RSS +{runs[v][-1][2] / 2**20:.1f} MB"
            )

    rows = {}
    for v in variants:
        wall, cpu, rss = zip(*runs[v])
        base_wall, base_cpu, _ = zip(*runs["baseline"])
        rows[v] = dict(
            median_wall_s=statistics.median(wall),
            median_cpu_s=statistics.median(cpu),
            speedup_wall=statistics.median(b / t for b, t in zip(base_wall, wall)),
            speedup_cpu=statistics.median(b / t for b, t in zip(base_cpu, cpu)),
            flops_ratio=flops["baseline"] / flops[v],
            gflops=flops[v] / 1e9,
            peak_rss_mb=max(rss) / 2**20,
            wall=wall,
            cpu=cpu,
        )
    print(
        f"{'variant':<11} {'wall s':>7} {'speedup':>8} {'CPU s':>7} {'CPU ratio':>9} {'FLOPs ratio':>11} "
        f"{'GFLOPs':>8} {'peak RSS +MB':>12}"
    )
    for v, r in rows.items():
        print(
            f"{v:<11} {r['median_wall_s']:7.2f} {r['speedup_wall']:8.3f} {r['median_cpu_s']:7.2f} "
            f"{r['speedup_cpu']:9.3f} {r['flops_ratio']:11.3f} {r['gflops']:8.1f} {r['peak_rss_mb']:12.1f}"
        )
    seq = rows["sequential"]
    print(
        f"sequential speedup / FLOPs ratio: wall {seq['speedup_wall'] / seq['flops_ratio']:.3f}, "
        f"CPU {seq['speedup_cpu'] / seq['flops_ratio']:.3f}"
    )
    if "all_key" in rows:
        print(
            f"all-key time / baseline: wall {1 / rows['all_key']['speedup_wall']:.3f}, "
            f"CPU {1 / rows['all_key']['speedup_cpu']:.3f}"
        )
    if args.json:
        with tempfile.NamedTemporaryFile(
            "w", dir=os.path.dirname(os.path.abspath(args.json)), delete=False, suffix=".tmp"
        ) as f:
            json.dump(dict(vars(args), rows=rows), f, indent=1)
        os.replace(f.name, args.json)


if __name__ == "__main__":
    main()
