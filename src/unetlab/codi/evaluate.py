"""Held-out evaluation of conditional pipelines on a digits or scenes task: fidelity (PSNR/SSIM to the ground truth),
condition consistency, the judge's accuracy (digits: the classifier; scenes: the mini-sd judge's all-stated-attributes-
correct and shape rates) and Fréchet distance, wall time; mean ± s.e. over sampling seeds."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..eval import accuracy, frechet_distance
from ..metrics import mean_psnr, ssim
from .degrade import condition_consistency

METRICS = ("psnr", "ssim", "consistency_psnr", "accuracy", "all_correct", "shape", "frechet", "seconds_per_image")


@dataclass
class Heldout:
    """The test split of a task: ground truth (N, C, H, W) in [0, 1], labels, its fixed conditions, and for a
    text-conditioned model the captions (scenes)."""

    task: str
    images: torch.Tensor
    labels: torch.Tensor | list
    conditions: torch.Tensor
    prompts: list[str] | None = None


def sample(pipe, data: Heldout, steps: int, seed: int, batch_size: int, **text) -> tuple[torch.Tensor, float]:
    """Outputs (N, C, H, W) in [0, 1] for the conditions (and captions) of `data`, one generator seeded `seed`
    drawn batch after batch; and the seconds the sampling took. `text`: e.g. guidance_scale, for text pipelines."""
    generator = torch.Generator().manual_seed(seed)
    outputs, t0 = [], time.perf_counter()
    for i in range(0, len(data.conditions), batch_size):
        prompt = {} if data.prompts is None else {"prompt": data.prompts[i : i + batch_size], **text}
        outputs.append(
            pipe(
                **prompt,
                image=data.conditions[i : i + batch_size],
                num_inference_steps=steps,
                generator=generator,
                output_type="pt",
            ).images
        )
    return torch.cat(outputs), time.perf_counter() - t0


def metrics(data: Heldout, outputs: torch.Tensor, seconds: float) -> dict[str, float]:
    """The metrics of one sampling run (see `METRICS`; digits: "accuracy", scenes: "all_correct" and "shape")."""
    out = {
        "psnr": mean_psnr(outputs, data.images),
        "ssim": ssim(outputs, data.images),
        "consistency_psnr": condition_consistency(data.task, outputs, data.conditions),
    }
    if data.prompts is None:
        out["accuracy"] = accuracy("digits", outputs, data.labels)["accuracy"]
        out["frechet"] = frechet_distance("digits", outputs)
    else:
        from ..eval import mini_sd

        rates = mini_sd.accuracy(outputs, data.prompts)
        out["all_correct"], out["shape"] = rates["overall"], rates["shape"]
        out["frechet"] = mini_sd.frechet_distance(outputs)
    out["seconds_per_image"] = seconds / len(outputs)
    return out


def mean_stderr(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "stderr"}} over runs (stderr = sample std / sqrt(k); 0 for one run)."""
    out = {}
    for key in runs[0]:
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        stderr = float(values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "stderr": stderr}
    return out


def evaluate(pipe, data: Heldout, steps: int, seeds: list[int], batch_size: int = 128, **text):
    """(summary over seeds, the outputs of the first seed) of `pipe` at `steps` sampling steps."""
    runs, first = [], None
    for seed in seeds:
        outputs, seconds = sample(pipe, data, steps, seed, batch_size, **text)
        runs.append(metrics(data, outputs, seconds))
        first = outputs if first is None else first
    return mean_stderr(runs), first


def condition_preview(task: str, conditions: torch.Tensor, size: int) -> torch.Tensor:
    """Conditions shown as images of the output size: sr4 nearest-upsampled; inpaint with the box grey."""
    if task == "sr4":
        return F.interpolate(conditions, size=(size, size), mode="nearest")
    mask = conditions[:, -1:]
    return conditions[:, :-1] * (1 - mask) + 0.5 * mask
