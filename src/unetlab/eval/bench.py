"""`unetlab.eval.bench`: every accelerator side by side on speed, FLOPs, memory and quality, with the
fewer-steps baselines at matched compute.

The baseline is a solver at a step count (`baseline="dpm++:25"`, default DDIM-50): every row samples with that
solver and its quality is measured against it; the fewer-steps rows run DDIM, DPM-Solver++ (2M) and UniPC
(`recipes/solver.py`) at the step counts whose UNet FLOPs match the other rows'."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import UnsupportedError
from ..recipes.solver import SchedulerSwap, parse_baseline, probe, resolve
from .bench_measure import match_steps, unet_flops
from .bench_methods import Method, applied, default_methods
from .bench_workload import Workload, sd15_workload, shipped_workload, user_workload
from .timing import MIN_ROUNDS, time_rounds

SHIPPED = ("digits", "shapes")  # the main job's default workloads
SHIPPED_WORKLOADS = ("mini-sd", *SHIPPED)
FEWER_SOLVERS = ("ddim", "dpm++", "unipc")  # the fewer-steps rows' solvers


def machine() -> str:
    """A one-line description of where the benchmark ran."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {dev}; "
        f"torch {torch.__version__}".replace("  ", " ")
    )


def workload_for(model: str, arch: str | None = None, random_weights: bool = False) -> Workload:
    """The workload for a shipped model name, a user pipeline, or `--arch sd15 --random-weights`."""
    if arch is not None:
        if arch != "sd15" or not random_weights:
            raise ValueError("arch: only `--arch sd15 --random-weights` (speed-only, SD-1.5 shape) is available")
        return sd15_workload()
    if random_weights:
        raise ValueError("random_weights: only valid together with arch='sd15'")
    return shipped_workload(model) if model in SHIPPED_WORKLOADS else user_workload(model)


def _quality(w: Workload, images, reference, labels) -> dict:
    from ..metrics import mean_psnr, ssim

    row = {"psnr": None, "ssim": None, "accuracy": None, "fd": None}
    if w.speed_only:
        return row
    if images is not reference:  # the baseline has no fidelity figure against itself
        row["psnr"] = mean_psnr(images, reference)  # each image capped at PSNR_CAP, then averaged
        row["ssim"] = float(ssim(images, reference))
    if w.quality_model is not None:
        from . import accuracy, frechet_distance

        acc = accuracy(w.quality_model, images, labels)  # shapes: all attributes right; digits: confident fraction
        row["accuracy"] = float(acc["overall"] if "overall" in acc else acc["confident"])
        row["accuracy_detail"] = {k: v for k, v in acc.items() if isinstance(v, (int, float))}
        row["fd"] = float(frechet_distance(w.quality_model, images))
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
    model: str | list[str] = SHIPPED,
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
) -> dict:
    """Benchmark the methods on each model against `baseline` ("SCHEDULER:STEPS", default "ddim:50"; `steps` alone
    means DDIM at that many steps); return `{"machine", "date", "rows"}` and write reports to `out`.

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
    known = {m.name for m in default_methods(steps, key_steps, block_skip_plan, quick=quick)}  # fail before loading
    missing = [m for m in methods or [] if m not in known]
    if missing:
        raise ValueError(f"--method: unknown {missing}; known: {sorted(known)}")
    if workload is None and arch is None and not random_weights:
        from ..models.load import check_exists

        for m in [model] if isinstance(model, str) else model:
            check_exists(m)
    if workload is not None:
        workloads = [workload]
    elif arch is not None or random_weights:
        workloads = [workload_for("", arch, random_weights)]
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
        solver = resolve(solver_name, w.pipe)
        others = [s for s in dict.fromkeys(resolve(name, w.pipe) for name in FEWER_SOLVERS) if s != solver]
        swap = None if solver.matches(w.pipe.scheduler) else SchedulerSwap(w.pipe, solver)
        try:
            r, im = _bench_one(
                w,
                methods,
                key_steps,
                block_skip_plan,
                quick,
                accelerator,
                solver,
                others,
                swap.original if swap else w.pipe.scheduler,
                **settings,
            )
        finally:
            if swap is not None:
                swap.remove()
        rows += r
        images.update({(w.name, k): v for k, v in im.items()})
    result = {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "speed_only": all(w.speed_only for w in workloads),
        "settings": {**settings, "baseline": f"{solver_name}:{steps}", "processes": _processes(accelerator)},
        "rows": rows,
    }
    if out is not None and _is_main(accelerator):
        from .bench_report import write_report

        write_report(result, images, Path(out))
    return result


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
        ims, f = unet_flops(lambda n=n, start=start: w.generate(n, steps, seed + start), w.unet)
        parts.append((start, ims))
        total += f
    if _processes(accelerator) > 1:
        from accelerate.utils import gather_object

        parts = gather_object(parts)
        total = sum(gather_object([total]))
    return torch.cat([ims for _, ims in sorted(parts, key=lambda p: p[0])]), total


def fewer_steps(n: int, solver, baseline, original) -> Method:
    """The row of `solver` alone at `n` steps; another solver than the baseline's is built from the pipeline's own
    scheduler (`original`) for the row."""
    config = {"steps": n, "scheduler": solver.label}
    if solver == baseline:
        return Method("fewer-steps", f"{solver.label}-{n}", config, n)
    return Method("fewer-steps", f"{solver.label}-{n}", config, n, lambda pipe: [SchedulerSwap(pipe, solver, original)])


def _bench_one(
    w: Workload,
    methods,
    key_steps,
    block_skip_plan,
    quick,
    accelerator,
    solver,
    others,
    original,
    *,
    steps,
    num_images,
    timing_images,
    repeats,
    seed,
    batch_size,
) -> tuple[list[dict], dict]:
    """Rows and per-method sample images for one workload, sampled with `solver`; fewer-steps rows also with the
    `others` (built from the pipeline's own scheduler, `original`)."""
    candidates = default_methods(steps, key_steps, block_skip_plan, quick=quick, baseline=solver.label)
    if methods is not None:  # names checked by `bench`
        candidates = [m for m in candidates if m.family == "baseline" or m.name in methods]
    from .bench_tuned import resolve as resolve_preset

    for m in candidates:  # the preset recipes of this model, on seeds the tuner never saw
        if m.family == "tuned":
            resolve_preset(m, w, steps, range(seed, seed + num_images + timing_images), solver)

    for m in candidates:  # a schedule or plan the user gave must fit this model: their error, not "unsupported"
        if m.user_input is not None:
            try:
                applied(m, w.pipe, lambda: None)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{m.user_input}: {m.name} cannot run on {w.name}: {err}") from None
    main = _is_main(accelerator)
    if accelerator is not None:
        w.pipe.to(accelerator.device)
    bar = tqdm(total=len(candidates) * (3 + repeats), desc=f"bench {w.name}", unit="run", disable=not main)
    images, flops = {}, {}

    def sample(m: Method) -> None:
        """The quality images of `m`, sampled under a FLOP counter (the counter's cost is per op, not per image)."""
        images[m.name], total = applied(
            m, w.pipe, lambda: sample_batched(w, num_images, m.steps, seed, batch_size, accelerator)
        )
        flops[m.name] = total / num_images
        bar.update(1)

    for m in candidates:  # a method that cannot run on this model becomes an "unsupported" row, with the reason;
        if m.unsupported is None:  # any other exception is a bug and fails the bench
            try:
                sample(m)
                continue
            except UnsupportedError as err:
                if m.user_input is not None:
                    raise ValueError(f"{m.user_input}: {m.name} failed on {w.name}: {err}") from None
                m.unsupported = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        bar.update(3 + repeats)
    base = candidates[0]
    if base.unsupported is not None:
        raise RuntimeError(f"bench: the baseline cannot run on {w.name}: {base.unsupported}")
    per_step = flops[base.name] / steps
    matched = sorted({match_steps(flops[m.name], per_step, steps) for m in candidates[1:] if m.name in flops} - {steps})
    runs = []
    for s in others:  # a solver the pipeline cannot step with is one row with the reason
        reason = probe(w.pipe, s, lambda: w.generate(1, 2, seed), original)
        if reason is None:
            runs.append(s)
        else:
            candidates.append(
                Method("fewer-steps", f"{s.label} (fewer steps)", {"scheduler": s.label}, steps, unsupported=reason)
            )
    for n in matched:  # the honest alternative: fewer full steps at matched UNet FLOPs, of each solver
        for s in [solver, *runs]:
            m = fewer_steps(n, s, solver, original)
            candidates.append(m)
            bar.total += 3 + repeats
            sample(m)
    runnable = [m for m in candidates if m.unsupported is None]

    labels = w.labels(num_images, seed)
    quality = {}
    for m in runnable:
        quality[m.name] = _quality(w, images[m.name], images[base.name], labels) if main else {}
        bar.update(1)
    expected = {m.name: flops[base.name] / flops[m.name] for m in runnable}  # a wall speed-up 2x off is re-timed
    timing = time_rounds(w, runnable, timing_images, repeats, seed + num_images, bar, expected) if main else {}
    if accelerator is not None:
        accelerator.wait_for_everyone()
    bar.close()

    rows = []
    for m in candidates:
        row = {
            "model": w.name,
            "method": m.name,
            "family": m.family,
            "config": m.config,
            "steps": m.steps,
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
            "psnr": None,
            "ssim": None,
            "accuracy": None,
            "fd": None,
            "unsupported": m.unsupported,
        }
        if m.unsupported is None and main:
            row.update(
                flops_per_image=flops[m.name],
                speedup_flops=flops[base.name] / flops[m.name],
                **timing[m.name],
                **quality[m.name],
            )
        rows.append(row)
    return rows, images
