"""The quality bars of the shipped models (`unetlab eval quality`): digit confidence, coverage and Fréchet distance,
shapes accuracy, and `mini-sd`'s judged rates over several seeds; each model sampled by name."""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm.auto import tqdm

from ..atomic import write_json
from ..data import scenes
from ..eval.mini_sd import judge_images, load_judge, over_seeds
from ..eval.scores import accuracy, features, frechet_distance, reference_stats
from ..metrics import frechet_gaussian, gaussian_stats

BARS = {
    "digits": {"confident": 0.9, "classes_present": 10, "frechet_ratio": 2.0},
    "shapes": {"shape": 0.9, "colour": 0.9},
}


def sample(
    pipe,
    kind: str,
    n: int,
    steps: int,
    guidance_scale: float,
    batch_size: int,
    seed: int,
    prompts: list[str] | None = None,
) -> torch.Tensor:
    """n samples (N, C, H, W) in [0, 1]; batch i uses generator seed (seed, i)."""
    out = []
    for i, start in enumerate(tqdm(range(0, n, batch_size), desc=f"sample {kind}", leave=False)):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        b = min(batch_size, n - start)
        if kind == "digits":
            images = pipe(batch_size=b, generator=g, num_inference_steps=steps, output_type="np").images
            out.append(torch.from_numpy(images).permute(0, 3, 1, 2))
        elif prompts is None:
            raise ValueError(f"prompts: kind {kind!r} samples from prompts; got None")
        else:
            out.append(
                pipe(
                    prompts[start : start + b],
                    generator=g,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    output_type="pt",
                ).images
            )
    return torch.cat(out).float().clamp(0, 1)


def train_test_frechet() -> float:
    """Fréchet distance between the digits train and test splits in the digit classifier's feature space."""
    from ..data import load_digits

    mu, sigma = gaussian_stats(features("digits", load_digits("train", 16)[0]))
    return frechet_gaussian(mu, sigma, *reference_stats("digits"))


def measure_quality(
    model: str,
    kind: str,
    num_samples: int | None = None,
    steps: int = 50,
    guidance_scale: float = 5.0,
    batch_size: int = 250,
    seed: int = 0,
    json_path=None,
    grid_path=None,
) -> dict:
    """Sample the model and measure its bars; returns the numbers and which bars pass."""
    from ..data.shapes import heldout_captions
    from ..loading import load
    from ..train.grid import save_grid

    if kind not in BARS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(BARS)}")
    n = (1000 if kind == "digits" else 500) if num_samples is None else num_samples
    for name, value in (("num_samples", n), ("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    pipe = load(model)
    prompts = heldout_captions(n, seed=seed) if kind == "shapes" else None
    t0 = time.perf_counter()
    images = sample(pipe, kind, n, steps, guidance_scale, batch_size, seed, prompts)
    result: dict[str, Any] = {
        "model": str(model),
        "kind": kind,
        "num_samples": n,
        "ddim_steps": steps,
        "seed": seed,
        "sampling_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    t0 = time.perf_counter()
    sample(pipe, kind, 64, steps, guidance_scale, 64, seed + 1, prompts[:64] if prompts else None)
    result["seconds_for_64_samples"] = round(time.perf_counter() - t0, 1)
    if kind == "digits":
        acc = accuracy("digits", images)
        fd = frechet_distance("digits", images)
        base = train_test_frechet()
        result.update(acc, frechet_distance=fd, train_test_frechet=base, frechet_ratio=fd / base)
        result["passes"] = {
            "confident": acc["confident"] >= 0.9,
            "classes_present": acc["classes_present"] == 10,
            "frechet_ratio": fd <= 2 * base,
        }
    else:
        result["guidance_scale"] = guidance_scale
        result.update(accuracy("shapes", images, prompts))
        result["frechet_distance"] = frechet_distance("shapes", images)
        result["passes"] = {k: result[k] >= v for k, v in BARS["shapes"].items()}
    if grid_path:
        save_grid(images[:64], grid_path, nrow=8)
    if json_path:
        write_json(json_path, result)
    return result


def generate_scenes(
    pipe, captions: list[str], steps: int, guidance_scale: float, seed: int, batch_size: int = 50, progress: bool = True
) -> torch.Tensor:
    """Images (N, 3, 64, 64) in [0, 1] of `captions`; batch i draws its noise from generator seed (seed, i)."""
    out = []
    starts = range(0, len(captions), batch_size)
    for i, start in enumerate(tqdm(starts, desc=f"sample seed {seed}", leave=False, disable=not progress)):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        out.append(
            pipe(
                captions[start : start + batch_size],
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=g,
                output_type="pt",
            )
            .images.float()
            .cpu()
        )
    return torch.cat(out).clamp(0, 1)


def measure_mini_sd(
    pipe,
    num_captions: int = 500,
    steps: int = 50,
    guidance_scale: float = 7.5,
    seeds: int = 3,
    batch_size: int = 50,
    progress: bool = True,
) -> dict:
    """`mini-sd`'s bars: `num_captions` test-split captions sampled at `seeds` noise seeds, judged; the real
    scenes' own scores (the judge's accuracy) and the real train-vs-test Fréchet distance for scale."""
    for name, value in (("num_captions", num_captions), ("steps", steps), ("seeds", seeds), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    judge, reference = load_judge()
    real, captions, labels = scenes.sample(num_captions, seed=0, split="test")
    rows = [
        judge_images(
            judge, reference, generate_scenes(pipe, captions, steps, guidance_scale, seed, batch_size, progress), labels
        )
        for seed in range(seeds)
    ]
    return {
        "num_captions": num_captions,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "seeds": seeds,
        "scheduler": type(pipe.scheduler).__name__,
        "scores": over_seeds(rows),
        "per_seed": rows,
        "real": judge_images(judge, reference, real, labels),
        "train_test_frechet": float(reference["train_test_frechet"]),
    }


def measure_model(
    model: str,
    num_captions: int = 500,
    steps: int = 50,
    guidance_scale: float = 7.5,
    seeds: int = 3,
    batch_size: int = 50,
    json_path=None,
    grid_path=None,
) -> dict:
    """`measure` on the pipeline `model` ("mini-sd" or a folder), with its bars; optionally a JSON file and a grid."""
    from ..loading import load
    from ..train.grid import save_grid

    pipe = load(model)
    result = {"model": str(model), **measure_mini_sd(pipe, num_captions, steps, guidance_scale, seeds, batch_size)}
    s, real = result["scores"], result["real"]
    one = s.get("all_correct_1obj")  # absent when no caption states one object
    result["passes"] = {
        "all_correct_1obj": None if one is None else one["mean"] >= 0.8,
        "all_correct": s["all_correct"]["mean"] >= 0.4,
        "judge_on_real": real["all_correct"] >= 0.97,
        "frechet_ratio": s["frechet"]["mean"] <= 2 * result["train_test_frechet"],
    }
    if grid_path:
        captions = scenes.sample(min(64, num_captions), seed=0, split="test")[1]
        save_grid(generate_scenes(pipe, captions, steps, guidance_scale, 0, batch_size, False), grid_path, nrow=8)
    if json_path:
        write_json(json_path, result)
    return result
