"""Held-out evaluation of conditional pipelines on a digits task: fidelity (PSNR/SSIM to the ground truth),
condition consistency, classifier accuracy and Fréchet distance, wall time; mean ± s.e. over sampling seeds."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..eval import accuracy, frechet_distance
from ..metrics import mean_psnr, ssim
from .degrade import condition_consistency

METRICS = ("psnr", "ssim", "consistency_psnr", "accuracy", "frechet", "seconds_per_image")


@dataclass
class Heldout:
    """The test split of a task: ground truth (N, C, H, W) in [0, 1], labels, and its fixed conditions."""

    task: str
    images: torch.Tensor
    labels: torch.Tensor
    conditions: torch.Tensor


def sample(pipe, conditions: torch.Tensor, steps: int, seed: int, batch_size: int) -> tuple[torch.Tensor, float]:
    """Outputs (N, C, H, W) in [0, 1] for `conditions`, one generator seeded `seed` drawn batch after batch;
    and the seconds the sampling took."""
    generator = torch.Generator().manual_seed(seed)
    outputs, t0 = [], time.perf_counter()
    for i in range(0, len(conditions), batch_size):
        outputs.append(
            pipe(
                image=conditions[i : i + batch_size], num_inference_steps=steps, generator=generator, output_type="pt"
            ).images
        )
    return torch.cat(outputs), time.perf_counter() - t0


def metrics(data: Heldout, outputs: torch.Tensor, seconds: float) -> dict[str, float]:
    """The metrics of one sampling run (see `METRICS`)."""
    return {
        "psnr": mean_psnr(outputs, data.images),
        "ssim": ssim(outputs, data.images),
        "consistency_psnr": condition_consistency(data.task, outputs, data.conditions),
        "accuracy": accuracy("digits", outputs, data.labels)["accuracy"],
        "frechet": frechet_distance("digits", outputs),
        "seconds_per_image": seconds / len(outputs),
    }


def mean_stderr(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "stderr"}} over runs (stderr = sample std / sqrt(k); 0 for one run)."""
    out = {}
    for key in runs[0]:
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        stderr = float(values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "stderr": stderr}
    return out


def evaluate(pipe, data: Heldout, steps: int, seeds: list[int], batch_size: int = 128):
    """(summary over seeds, the outputs of the first seed) of `pipe` at `steps` sampling steps."""
    runs, first = [], None
    for seed in seeds:
        outputs, seconds = sample(pipe, data.conditions, steps, seed, batch_size)
        runs.append(metrics(data, outputs, seconds))
        first = outputs if first is None else first
    return mean_stderr(runs), first


def condition_preview(task: str, conditions: torch.Tensor, size: int) -> torch.Tensor:
    """Conditions shown as images of the output size: sr4 nearest-upsampled; inpaint with the box grey."""
    if task == "sr4":
        return F.interpolate(conditions, size=(size, size), mode="nearest")
    mask = conditions[:, -1:]
    return conditions[:, :-1] * (1 - mask) + 0.5 * mask
