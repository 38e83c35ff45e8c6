"""Per-UNet-call overhead of each handle at an identity setting (every step full: the same FLOPs as plain), timed
against the plain pipeline with the bench's paired, rotated rounds (`unetlab.bench.timing.time_rounds`), on the
process's CPU time by default (`--clock cpu`: not inflated while other processes hold the cores of a shared
machine; `--clock wall` for wall time). The Python function and builtin calls each handle adds per UNet call are
counted too (cProfile): the bookkeeping itself, free of the timing noise.

Usage: python benchmarks/overhead.py [--rounds 4] [--steps 20] [--clock cpu|wall] [--out overhead.json]
       python benchmarks/overhead.py --profile "branch cache" [--workload mini-sd]   (the calls it adds, profiled)

Workloads: the SD-1.5-shaped UNet at channels / 10 on 32x32 latents (random weights, guidance 7.5) and the shipped
`mini-sd` (its own UNet, text encoder and guidance 7.5; latents out, no VAE decode), DDIM, one image per call.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pstats
import time
from pathlib import Path

import torch

from unetlab.accel import (
    BlockSkipConfig,
    BranchCacheConfig,
    ClockworkConfig,
    DeepCacheConfig,
    EncoderPropagationConfig,
    GuidanceReuseConfig,
)
from unetlab.atomic import write_text
from unetlab.bench.measure import cpu_time, machine, wall_time
from unetlab.bench.timing import time_rounds
from unetlab.bench.workload import arch_workload, shipped_workload
from unetlab.recipes import Recipe, accelerate
from unetlab.recipes.solver import Solver

IDENTITY = {  # handle: its identity setting (every step a full UNet call)
    "encoder propagation": EncoderPropagationConfig(key_steps="uniform:1", noise_injection=None),
    "branch cache": BranchCacheConfig(interval=1),
    "branch cache taylor1": BranchCacheConfig(interval=1, reuse="taylor1"),
    "clockwork": ClockworkConfig(clock=1),
    "block skip": BlockSkipConfig(),
    "guidance reuse": GuidanceReuseConfig(interval=1),
    "DeepCache (peer)": DeepCacheConfig(interval=1),
}
SETTING = {
    "encoder propagation": "key_steps='uniform:1' (every step a key step)",
    "branch cache": "interval=1",
    "branch cache taylor1": "interval=1, reuse='taylor1'",
    "clockwork": "clock=1",
    "block skip": "an empty plan",
    "guidance reuse": "interval=1",
    "DeepCache (peer)": "cache_interval=1",
}


def workloads():
    sd15 = arch_workload("sd15", sample_size=32, scale=10)
    mini = shipped_workload("mini-sd")
    mini.call_kwargs = {"output_type": "latent"}
    return {"sd15/10 32x32": sd15, "mini-sd": mini}


def recipes(steps: int) -> dict[str, Recipe]:
    solver = Solver("DDIMScheduler")
    return {"plain": Recipe(steps, solver), **{k: Recipe(steps, solver, (c,)) for k, c in IDENTITY.items()}}


def python_calls(w, recipe: Recipe) -> int:
    """Python function and builtin calls of one pipeline call under `recipe`, applied for it as `time_rounds` applies
    it around each timed call (cProfile's count: the same on any machine, unlike the time)."""
    with accelerate(w.pipe, recipe):
        prof = cProfile.Profile()
        prof.enable()
        w.generate(1, recipe.num_inference_steps, 0)
        prof.disable()
    return sum(e.callcount for e in prof.getstats())


def same_output(w, recipe: Recipe, plain: torch.Tensor) -> bool:
    with accelerate(w.pipe, recipe):
        return torch.equal(w.generate(1, recipe.num_inference_steps, 0), plain)


def measure(steps: int, rounds: int, clock) -> dict:
    out = {}
    for name, w in workloads().items():
        rs = recipes(steps)
        plain = w.generate(1, steps, 0)
        timing = time_rounds(w, rs, 1, rounds, 0, expected=dict.fromkeys(rs, 1.0), clock=clock)
        base = timing["plain"]["seconds_per_image"]
        calls = {k: python_calls(w, r) for k, r in rs.items()}
        out[name] = {
            k: {
                "setting": SETTING.get(k, "none"),
                "same_output": True if k == "plain" else same_output(w, rs[k], plain),
                "seconds_per_call": t["seconds_per_image"],
                "overhead": 1 / t["speedup_wall"] - 1,
                "overhead_min": 1 / t["speedup_wall_max"] - 1,
                "overhead_max": 1 / t["speedup_wall_min"] - 1,
                "ms_per_unet_call": (t["seconds_per_image"] - base) / steps * 1000,
                "settled": t["timing_settled"],
                "python_calls_per_unet_call": (calls[k] - calls["plain"]) / steps,
            }
            for k, t in timing.items()
        }
    return out


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}; load average at the start {result['load']}  ",
        f"Date: {result['date']}; DDIM-{result['steps']}, one image per call, guidance on (one UNet call per step), "
        f"{result['rounds']} paired rotated rounds (`bench.timing.time_rounds`), minimum {result['clock']} times "
        "(† rounds spreading by more than 25%).",
        "",
        f"| workload | handle | identity setting | same output as plain | {result['clock']} s/call | "
        "overhead (min–max paired) | "
        "ms per UNet call | Python calls added per UNet call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for wname, rows in result["workloads"].items():
        for k, r in rows.items():
            if k == "plain":
                lines.append(f"| {wname} | plain | – | – | {r['seconds_per_call']:.3f} | – | – | – |")
                continue
            lines.append(
                f"| {wname} | {k} | {r['setting']} | {'yes' if r['same_output'] else 'no'} | "
                f"{r['seconds_per_call']:.3f} | {100 * r['overhead']:+.1f}% ({100 * r['overhead_min']:+.1f}–"
                f"{100 * r['overhead_max']:+.1f}%){'' if r['settled'] else ' †'} | {r['ms_per_unet_call']:+.2f} | "
                f"{r['python_calls_per_unet_call']:+.0f} |"
            )
    return "\n".join(lines) + "\n"


def function_stats(w, recipe: Recipe) -> dict:
    """cProfile's (calls, own seconds) per function over one pipeline call under `recipe`, on `time.perf_counter`
    (the CPU clock costs ~2 µs per read, which would swamp the small functions)."""
    with accelerate(w.pipe, recipe):
        prof = cProfile.Profile(time.perf_counter)
        prof.enable()
        w.generate(1, recipe.num_inference_steps, 0)
        prof.disable()
    return {key: (v[1], v[2]) for key, v in pstats.Stats(prof).stats.items()}  # type: ignore[attr-defined]


def profile(handle: str, steps: int, workload: str) -> None:
    """The Python calls `handle` adds per UNet call over plain and their profiled time (each added call at its
    function's mean time, the profiler's own cost and any preemption landing in it included: an upper bound), with
    the 25 functions that add the most."""
    w, rs = workloads()[workload], recipes(steps)
    function_stats(w, rs["plain"])  # warm-up
    plain, handled = function_stats(w, rs["plain"]), function_stats(w, rs[handle])
    added = []
    for key, (n, t) in handled.items():
        extra = n - plain.get(key, (0, 0.0))[0]
        if extra > 0:
            added.append((extra * t / n / steps, extra / steps, key))
    added.sort(reverse=True)
    net = (sum(n for n, _ in handled.values()) - sum(n for n, _ in plain.values())) / steps
    print(
        f"{handle} on {workload}, DDIM-{steps}: {net:+.0f} Python calls per UNet call; the added calls take "
        f"{1000 * sum(a[0] for a in added):.3f} ms per UNet call profiled (an upper bound)"
    )
    for t, n, (file, line, fn) in added[:25]:
        print(f"  {1000 * t:8.3f} ms {n:+8.1f} calls  {file}:{line}({fn})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="overhead.json")
    parser.add_argument("--profile", choices=list(IDENTITY), help="profile this handle against plain instead of timing")
    parser.add_argument("--workload", choices=["sd15/10 32x32", "mini-sd"], default="sd15/10 32x32", help="--profile's")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.profile:
        profile(args.profile, args.steps, args.workload)
        return
    result = {
        "machine": machine(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.date.today().isoformat(),
        "steps": args.steps,
        "rounds": args.rounds,
        "clock": args.clock,
        "workloads": measure(args.steps, args.rounds, cpu_time if args.clock == "cpu" else wall_time),
    }
    write_text(Path(args.out), json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
