"""What the benchmark measures about one pipeline call: wall time, UNet FLOPs, peak memory; and where it ran."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode


def unet_flops(run: Callable[[], object], unet: torch.nn.Module) -> tuple[object, int]:
    """(`run()`'s result, FLOPs spent inside `unet` and what it calls), counted by torch.utils.flop_counter."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = run()
    return out, sum(counter.get_flop_counts().get(type(unet).__name__, {}).values())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory():
    """Yield a dict whose "mb" is the peak memory increase during the block.

    CUDA: `torch.cuda.max_memory_allocated` delta. CPU: resident-set-size delta, sampled every millisecond
    by a background thread (Linux `/proc/self/statm`); None where neither is available.
    """
    result: dict = {"mb": None}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield result
        torch.cuda.synchronize()
        result["mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return
    if not os.path.exists("/proc/self/statm"):
        yield result
        return
    base, peak, stop = _rss_bytes(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        result["mb"] = max(0, peak[0] - base) / 2**20


def wall_time(run: Callable[[], object]) -> float:
    """Seconds for one `run()`: between two CUDA events recorded around it, after synchronising, where CUDA is
    present (the queue drained before the start and after the end); `time.perf_counter` otherwise."""
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000


def cpu_time(run: Callable[[], object]) -> float:
    """CPU seconds this process spent in one `run()` (all its threads): unlike wall time, not inflated while other
    processes hold the cores; the clock for per-call overheads on a shared CPU machine, meaningless for GPU work."""
    t0 = time.process_time()
    run()
    return time.process_time() - t0


def match_steps(target_flops: float, flops_per_step: float, max_steps: int) -> int:
    """The number of full UNet steps (1..max_steps) whose FLOPs are closest to `target_flops`."""
    if flops_per_step <= 0:
        raise ValueError(f"flops_per_step: must be positive, got {flops_per_step}")
    if max_steps < 1:
        raise ValueError(f"max_steps: must be >= 1, got {max_steps}")
    return min(range(1, max_steps + 1), key=lambda n: (abs(n * flops_per_step - target_flops), n))


def machine() -> str:
    """A one-line description of where the benchmark ran."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {dev}; "
        f"torch {torch.__version__}".replace("  ", " ")
    )
