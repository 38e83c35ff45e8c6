"""`unetlab.eval.bench`: every accelerator side by side on speed, FLOPs, memory and quality, with the
fewer-steps baselines at matched compute."""

from __future__ import annotations

import datetime
import platform
import statistics
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .bench_measure import match_steps, peak_memory, unet_flops, wall_time
from .bench_methods import Method, default_methods
from .bench_workload import Workload, sd15_workload, shipped_workload, user_workload

SHIPPED = ("digits", "shapes")
PSNR_CAP = 100.0  # dB; identical images (infinite PSNR) are reported at the cap, which JSON can hold


def machine() -> str:
    """A one-line description of where the benchmark ran."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {dev}; " \
           f"torch {torch.__version__}".replace("  ", " ")


def workload_for(model: str, arch: str | None = None, random_weights: bool = False) -> Workload:
    """The workload for a shipped model name, a user pipeline, or `--arch sd15 --random-weights`."""
    if arch is not None:
        if arch != "sd15" or not random_weights:
            raise ValueError("arch: only `--arch sd15 --random-weights` (speed-only, SD-1.5 shape) is available")
        return sd15_workload()
    if random_weights:
        raise ValueError("random_weights: only valid together with arch='sd15'")
    return shipped_workload(model) if model in SHIPPED else user_workload(model)


def _with(method: Method, pipe, fn):
    handles = method.apply(pipe) if method.apply else []
    try:
        return fn()
    finally:
        for h in reversed(handles):
            h.remove()


def _quality(w: Workload, images, reference, labels) -> dict:
    from . import psnr, ssim

    row = {"psnr": None, "ssim": None, "accuracy": None, "fd": None}
    if w.speed_only:
        return row
    if images is not reference:  # the baseline has no fidelity figure against itself
        row["psnr"] = min(float(psnr(images, reference)), PSNR_CAP)
        row["ssim"] = float(ssim(images, reference))
    if w.quality_model is not None:
        from . import accuracy, frechet_distance

        acc = accuracy(w.quality_model, images, labels)  # shapes: all attributes right; digits: confident fraction
        row["accuracy"] = float(acc["overall"] if "overall" in acc else acc["confident"])
        row["accuracy_detail"] = {k: v for k, v in acc.items() if isinstance(v, (int, float))}
        row["fd"] = float(frechet_distance(w.quality_model, images))
    return row


def bench(model: str | list[str] = SHIPPED, out: str | Path | None = None, steps: int = 50, num_images: int = 32,
          timing_images: int = 8, repeats: int = 3, methods: list[str] | None = None, seed: int = 0,
          arch: str | None = None, random_weights: bool = False, key_steps: str | None = None,
          block_skip_plan: str | None = None, quick: bool = False, workload: Workload | None = None) -> dict:
    """Benchmark the methods on each model; return `{"machine", "date", "rows"}` and write reports to `out`."""
    for name, value, low in (("steps", steps, 2), ("num_images", num_images, 1), ("timing_images", timing_images, 1),
                             ("repeats", repeats, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if workload is not None:
        workloads = [workload]
    elif arch is not None or random_weights:
        workloads = [workload_for("", arch, random_weights)]
    else:
        workloads = [workload_for(m) for m in ([model] if isinstance(model, str) else model)]
    rows, images = [], {}
    for w in workloads:
        r, im = _bench_one(w, steps, num_images, timing_images, repeats, methods, seed, key_steps, block_skip_plan,
                           quick)
        rows += r
        images.update({(w.name, k): v for k, v in im.items()})
    result = {"machine": machine(), "date": datetime.date.today().isoformat(),
              "speed_only": all(w.speed_only for w in workloads),
              "settings": {"steps": steps, "num_images": num_images, "timing_images": timing_images,
                           "repeats": repeats, "seed": seed}, "rows": rows}
    if out is not None:
        from .bench_report import write_report

        write_report(result, images, Path(out))
    return result


def _bench_one(w: Workload, steps, num_images, timing_images, repeats, methods, seed, key_steps, block_skip_plan,
               quick) -> tuple[list[dict], dict]:
    """Rows and per-method sample images for one workload."""
    candidates = default_methods(steps, key_steps, block_skip_plan, quick=quick)
    if methods is not None:
        known = {m.name for m in candidates}
        missing = [m for m in methods if m not in known]
        if missing:
            raise ValueError(f"methods: unknown {missing}; known: {sorted(known)}")
        candidates = [m for m in candidates if m.family == "baseline" or m.name in methods]

    bar = tqdm(total=len(candidates) * (2 + repeats), desc=f"bench {w.name}", unit="run")
    images, flops = {}, {}

    def sample(m: Method) -> None:
        """The quality images of `m`, sampled under a FLOP counter (the counter's cost is per op, not per image)."""
        images[m.name], total = _with(m, w.pipe, lambda: unet_flops(lambda: w.generate(num_images, m.steps, seed),
                                                                      w.unet))
        flops[m.name] = total / num_images
        bar.update(1)

    for m in candidates:  # a method that cannot run on this model becomes an "unsupported" row, with the reason
        if m.unsupported is None:
            try:
                sample(m)
                continue
            except Exception as err:  # noqa: BLE001 - any failure to apply is reported, not hidden
                m.unsupported = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        bar.update(1 + 1 + repeats)
    base = candidates[0]
    if base.unsupported is not None:
        raise RuntimeError(f"bench: the baseline cannot run on {w.name}: {base.unsupported}")
    per_step = flops[base.name] / steps
    matched = sorted({match_steps(flops[m.name], per_step, steps) for m in candidates[1:] if m.name in flops} - {steps})
    for n in matched:  # the honest alternative: the same scheduler with fewer full steps at matched UNet FLOPs
        m = Method("fewer-steps", f"DDIM-{n}", {"steps": n}, n)
        candidates.append(m)
        bar.total += 2 + repeats
        sample(m)
    runnable = [m for m in candidates if m.unsupported is None]

    labels = w.labels(num_images, seed)
    quality, peak = {}, {}
    for m in runnable:
        quality[m.name] = _quality(w, images[m.name], images[base.name], labels)
        bar.update(1)
    times = {m.name: [] for m in runnable}
    for r in range(repeats):  # alternate the methods so that machine drift affects all of them alike
        for m in runnable:
            if r == 0:
                with peak_memory() as mem:
                    times[m.name].append(_with(m, w.pipe, lambda: wall_time(
                        lambda: w.generate(timing_images, m.steps, seed + num_images))))
                peak[m.name] = mem["mb"]
            else:
                times[m.name].append(_with(m, w.pipe, lambda: wall_time(
                    lambda: w.generate(timing_images, m.steps, seed + num_images))))
            bar.update(1)
    bar.close()

    base_s = statistics.median(times[base.name]) / timing_images
    rows = []
    for m in candidates:
        row = {"model": w.name, "method": m.name, "family": m.family, "config": m.config, "steps": m.steps,
               "seconds_per_image": None, "speedup_wall": None, "speedup_flops": None, "flops_per_image": None,
               "peak_mem_mb": None, "psnr": None, "ssim": None, "accuracy": None, "fd": None,
               "unsupported": m.unsupported}
        if m.unsupported is None:
            s = statistics.median(times[m.name]) / timing_images
            row.update(seconds_per_image=s, speedup_wall=base_s / s, flops_per_image=flops[m.name],
                       speedup_flops=flops[base.name] / flops[m.name], peak_mem_mb=peak[m.name], **quality[m.name])
        rows.append(row)
    return rows, images
