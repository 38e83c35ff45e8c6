"""`unetlab bench`: every accelerator side by side on speed, FLOPs, memory and quality, with the fewer-steps
baselines at matched compute.

The baseline is a solver at a step count (`baseline="dpm++:25"`, default DDIM-50): every row's recipe samples with
that solver and its quality is measured against it; the fewer-steps rows run DDIM, DPM-Solver++ (2M) and UniPC
(`recipes/solver.py`) at the step counts whose UNet FLOPs match the other rows'. Every row is a `Recipe` applied
with `unetlab.accelerate` (`rows.py`); a row that raises `unetlab.UnsupportedError` is reported as unsupported with
the reason, and any other exception fails the bench."""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from tqdm.auto import tqdm

from ..errors import UnsupportedError
from ..eval.workload import Workload
from ..metrics import mean_psnr, perceptual, ssim
from ..recipes import Recipe, accelerate
from ..recipes.solver import parse_baseline, probe, resolve
from .measure import machine, match_steps, unet_flops
from .rows import Context, Row, fewer_steps, reason, specs, unrunnable_solver
from .timing import MIN_ROUNDS, time_rounds
from .workload import check_backend, compile_unet, workload_for

SHIPPED = ("mini-sd", "digits", "shapes")  # the main job's default workloads: SD-1.5-shaped first
FEWER_SOLVERS = ("ddim", "dpm++", "unipc")  # the fewer-steps rows' solvers


def _quality(w: Workload, images, reference, labels) -> dict:
    row: dict[str, float | dict | None] = {"psnr": None, "ssim": None, "accuracy": None, "fd": None, "perceptual": None}
    if w.speed_only:
        return row
    if images is not reference:  # the baseline has no fidelity figure against itself
        row["psnr"] = mean_psnr(images, reference)  # each image capped at PSNR_CAP, then averaged
        row["ssim"] = float(ssim(images, reference))
    if w.quality_model is not None:
        from ..eval import accuracy, frechet_distance

        acc = accuracy(w.quality_model, images, labels)  # shapes: all attributes right; digits: confident fraction
        row["accuracy"] = float(acc["overall"] if "overall" in acc else acc["confident"])
        row["accuracy_detail"] = {k: v for k, v in acc.items() if isinstance(v, (int, float))}
        row["fd"] = float(frechet_distance(w.quality_model, images))
        if images is not reference:  # the judge's reading of each image against the baseline's (0: the same)
            from ..eval.scores import judge_features

            row["perceptual"] = perceptual(
                judge_features(w.quality_model, images), judge_features(w.quality_model, reference)
            )
    return row


def baseline_of(baseline: str | None, steps: int | None) -> tuple[str, int]:
    """(solver name, steps) of the baseline: `baseline` "SCHEDULER:STEPS", else DDIM at `steps` (default 50)."""
    if baseline is None:
        return "ddim", 50 if steps is None else steps
    name, n = parse_baseline(baseline)
    if steps is not None and steps != n:
        raise ValueError(
            f"--steps: {steps} disagrees with --baseline {baseline}; give the step count in --baseline only"
        )
    return name, n


def bench(
    model: str | Sequence[str] = SHIPPED,
    out: str | Path | None = None,
    steps: int | None = None,
    num_images: int = 32,
    timing_images: int = 8,
    repeats: int = 3,
    methods: list[str] | None = None,
    seed: int = 0,
    arch: str | None = None,
    random_weights: bool = False,
    key_steps: str | None = None,
    block_skip_plan: str | None = None,
    quick: bool = False,
    workload: Workload | None = None,
    batch_size: int = 32,
    accelerator=None,
    baseline: str | None = None,
    scale: int | None = None,
    dtype: str | None = None,
    latent_size: int | None = None,
    compile: str | None = None,
) -> dict:
    """Benchmark the methods on each model against `baseline` ("SCHEDULER:STEPS", default "ddim:50"; `steps` alone
    means DDIM at that many steps); return `{"machine", "date", "rows"}` and write reports to `out`.

    `arch` ("sd15", "sdxl") with `random_weights` benchmarks a random UNet of that shape for speed only, at `scale`
    (1 full size, 10 channels / 10, the default), in `dtype` (default "float32"), at `latent_size` (default the
    architecture's own, 64 / 128). `compile` (a `torch.compile` backend, e.g. "inductor") times every row with
    the compiled UNet: FLOPs and samples come from eager calls first; each row's warm-up call less one timed call is
    its `compile_s`.

    Quality images are sampled `batch_size` at a time; under `accelerate launch` (an `accelerator` with several
    processes) the batches are shared among the processes and the main process times, merges and reports.
    """
    solver_name, steps = baseline_of(baseline, steps)
    for name, value, low in (
        ("steps", steps, 2),
        ("num_images", num_images, 1),
        ("timing_images", timing_images, 1),
        ("repeats", repeats, MIN_ROUNDS),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    known = {s.name for s in specs(steps, key_steps, block_skip_plan, quick=quick)}  # fail before loading
    missing = [m for m in methods or [] if m not in known]
    if missing:
        raise ValueError(f"--method: unknown {missing}; known: {sorted(known)}")
    for name, given in (("scale", scale), ("dtype", dtype), ("latent_size", latent_size), ("compile", compile)):
        if given is not None and arch is None:
            raise ValueError(f"{name}: only valid together with arch='sd15' or 'sdxl' (--arch, --random-weights)")
    if compile is not None:
        check_backend(compile)
    if workload is None and arch is None and not random_weights:
        from ..loading import check_exists

        for m in [model] if isinstance(model, str) else model:
            check_exists(m)
    if workload is not None:
        workloads = [workload]
    elif arch is not None or random_weights:
        workloads = [workload_for("", arch, random_weights, scale, dtype, latent_size)]
    else:
        workloads = [workload_for(m) for m in ([model] if isinstance(model, str) else model)]
    rows, images = [], {}
    settings = {
        "steps": steps,
        "num_images": num_images,
        "timing_images": timing_images,
        "repeats": repeats,
        "seed": seed,
        "batch_size": batch_size,
    }
    for w in workloads:
        r, im = bench_workload(
            w, solver_name, methods, key_steps, block_skip_plan, quick, accelerator, compile=compile, **settings
        )
        rows += r
        images.update({(w.name, k): v for k, v in im.items()})
    result = {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "speed_only": all(w.speed_only for w in workloads),
        "settings": {
            **settings,
            "baseline": f"{solver_name}:{steps}",
            "processes": _processes(accelerator),
            **_shape(arch, scale, workloads, compile),
        },
        "rows": rows,
    }
    if out is not None and _is_main(accelerator):
        from .report import write_report

        write_report(result, images, Path(out))
    return result


def _shape(arch: str | None, scale: int | None, workloads: list[Workload], compile: str | None) -> dict:
    """The UNet's dtype (of the first workload); for `arch`, its channel scale and latent size; the compile backend."""
    unet = workloads[0].unet
    return {
        "arch": arch,
        "dtype": str(unet.dtype).removeprefix("torch."),
        "scale": None if arch is None else scale or 10,
        "latent_size": None if arch is None else unet.config.sample_size,
        "compile": compile,
    }


def _processes(accelerator) -> int:
    return 1 if accelerator is None else accelerator.num_processes


def _is_main(accelerator) -> bool:
    return accelerator is None or accelerator.is_main_process


def sample_batched(
    w: Workload, num_images: int, steps: int, seed: int, batch_size: int, accelerator=None
) -> tuple[torch.Tensor, int]:
    """Images 0..num_images-1 (image i from seed + i) in batches of `batch_size`, and the UNet FLOPs spent.

    Batch k always holds images k*batch_size.. whichever process samples it, so the images do not depend on the
    number of processes; every process returns all images (gathered) and the FLOPs summed over processes."""
    starts = list(range(0, num_images, batch_size))
    mine = starts
    if _processes(accelerator) > 1:
        with accelerator.split_between_processes(starts) as part:
            mine = list(part)
    parts, total = [], 0
    for start in mine:
        n = min(batch_size, num_images - start)
        ims, f = unet_flops(functools.partial(w.generate, n, steps, seed + start), w.unet)
        parts.append((start, cast(torch.Tensor, ims)))  # unet_flops returns run()'s result: w.generate's images
        total += f
    if _processes(accelerator) > 1:
        from accelerate.utils import gather_object

        parts = gather_object(parts)
        total = sum(gather_object([total]))
    return torch.cat([ims for _, ims in sorted(parts, key=lambda p: p[0])]), total


def _row_dict(w: Workload, r: Row, steps: int) -> dict:
    return {
        "model": w.name,
        "method": r.name,
        "family": r.family,
        "config": None if r.recipe is None else r.recipe.to_dict(),
        "steps": steps if r.recipe is None else r.recipe.num_inference_steps,
        "seconds_per_image": None,
        "speedup_wall": None,
        "speedup_wall_min": None,
        "speedup_wall_max": None,
        "timing_rounds": None,
        "timing_spread": None,
        "timing_settled": None,
        "timing_retimed": None,
        "timing_disagrees": None,
        "speedup_flops": None,
        "flops_per_image": None,
        "peak_mem_mb": None,
        "warmup_s": None,
        "compile_s": None,
        "psnr": None,
        "ssim": None,
        "accuracy": None,
        "fd": None,
        "unsupported": r.unsupported,
    }


def _recipe(r: Row) -> Recipe:
    """The recipe of a row that runs (every row without an unsupported reason has one)."""
    if r.recipe is None:
        raise RuntimeError(f"bench: row {r.name!r} has no recipe to run")
    return r.recipe


def _refuses_compiled(w: Workload, r: Row) -> str | None:
    """Why `r`'s recipe cannot be applied to the compiled UNet (tomesd refuses the `torch.compile` wrapper), or
    None; applying compiles nothing."""
    try:
        with accelerate(w.pipe, r.recipe):
            return None
    except Exception as err:  # any refusal, reported on the row
        return reason(err)


def bench_workload(
    w: Workload,
    solver_name: str,
    methods,
    key_steps,
    block_skip_plan,
    quick,
    accelerator,
    *,
    steps,
    num_images,
    timing_images,
    repeats,
    seed,
    batch_size,
    compile=None,
) -> tuple[list[dict], dict]:
    """Rows and per-row sample images for one workload against the baseline `solver_name` at `steps`; the
    fewer-steps rows also with the other `FEWER_SOLVERS` the pipeline can step with; timed with the UNet compiled
    by the `compile` backend when given (after the eager sampling)."""
    solver = resolve(solver_name, w.pipe)
    ctx = Context(w.unet, steps, solver, w.guidance_scale, range(seed, seed + num_images + timing_images))
    chosen = specs(steps, key_steps, block_skip_plan, quick, solver.label)
    if methods is not None:  # names checked by `bench`
        chosen = [s for s in chosen if s.family == "baseline" or s.name in methods]
    rows = [s.make(ctx) for s in chosen]

    for r in rows:  # a schedule or plan the user gave must fit this model: their error, not "unsupported"
        if r.user_input is not None and r.unsupported is None:
            try:
                with accelerate(w.pipe, r.recipe):
                    pass
            except (ValueError, TypeError) as err:
                raise ValueError(f"{r.user_input}: {r.name} cannot run on {w.name}: {err}") from None
    main = _is_main(accelerator)
    if accelerator is not None:
        w.pipe.to(accelerator.device)
    bar = tqdm(total=len(rows) * (3 + repeats), desc=f"bench {w.name}", unit="run", disable=not main)
    images, flops = {}, {}

    def sample(r: Row) -> None:
        """The quality images of `r`, sampled under a FLOP counter (the counter's cost is per op, not per image)."""
        recipe = _recipe(r)
        with accelerate(w.pipe, recipe):
            images[r.name], total = sample_batched(
                w, num_images, recipe.num_inference_steps, seed, batch_size, accelerator
            )
        flops[r.name] = total / num_images
        bar.update(1)

    for i, r in enumerate(rows):  # a row that cannot run on this model is "unsupported", with the reason;
        if r.unsupported is None:  # any other exception is a bug and fails the bench
            try:
                sample(r)
                continue
            except UnsupportedError as err:
                if r.user_input is not None:
                    raise ValueError(f"{r.user_input}: {r.name} failed on {w.name}: {err}") from None
                rows[i] = dataclasses.replace(r, unsupported=reason(err))
            except Exception as err:  # a bug: the bench fails (exit 1), naming the row
                raise RuntimeError(f"bench: {r.name} failed on {w.name}: {reason(err)}") from err
        bar.update(3 + repeats)
    base = rows[0]
    if base.unsupported is not None:
        raise RuntimeError(f"bench: the baseline cannot run on {w.name}: {base.unsupported}")
    per_step = flops[base.name] / steps
    counts = {match_steps(flops[r.name], per_step, steps) for r in rows[1:] if r.name in flops}
    matched = sorted((counts | {max(1, steps // 2)}) - {steps})  # and half the steps (DPM-Solver++ 25 of DDIM-50)
    runs = []
    for name in FEWER_SOLVERS:  # a solver the pipeline cannot step with is one row with the reason
        s = resolve(name, w.pipe)
        if s == solver or s in runs:
            continue
        why = probe(w.pipe, s, lambda: w.generate(1, 2, seed))
        if why is None:
            runs.append(s)
        else:
            rows.append(unrunnable_solver(s, steps, why))
    half = max(1, steps // 2)
    for n in matched:  # the honest alternative: fewer full steps at matched UNet FLOPs, of each solver
        for s in [solver, *runs] if n == half or not quick else [solver]:  # quick: the others at half the steps
            r = fewer_steps(n, s)
            rows.append(r)
            bar.total += 3 + repeats
            sample(r)
    runnable = [r for r in rows if r.unsupported is None]

    labels = w.labels(num_images, seed)
    quality = {}
    for r in runnable:
        quality[r.name] = _quality(w, images[r.name], images[base.name], labels) if main else {}
        bar.update(1)
    expected = {r.name: flops[base.name] / flops[r.name] for r in runnable}  # a wall speed-up 2x off is re-timed
    recipes = {r.name: _recipe(r) for r in runnable}
    if compile is not None:
        compile_unet(w, compile)
        for i, r in enumerate(rows):
            why = _refuses_compiled(w, r) if r.name in recipes else None
            if why is not None:
                rows[i] = dataclasses.replace(r, unsupported=f"under torch.compile: {why}")
                del recipes[r.name]
    timing = {}
    if main:
        timing = time_rounds(
            w, recipes, timing_images, repeats, seed + num_images, bar, expected, consecutive=compile is not None
        )
        for t in timing.values():
            t["compile_s"] = None if compile is None else t["warmup_s"] - t["seconds_per_image"] * timing_images
    if accelerator is not None:
        accelerator.wait_for_everyone()
    bar.close()

    out = []
    for r in rows:
        d = _row_dict(w, r, steps)
        if r.unsupported is None and main:
            d.update(
                flops_per_image=flops[r.name],
                speedup_flops=flops[base.name] / flops[r.name],
                **timing[r.name],
                **quality[r.name],
            )
        out.append(d)
    return out, images
