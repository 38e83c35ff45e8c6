"""The quality bars of the shipped models (issue 5): digit confidence/coverage/Fréchet distance, shapes accuracy."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..atomic import write_json
from ..metrics import frechet_gaussian, gaussian_stats
from .scores import accuracy, features, frechet_distance, reference_stats

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
    from ..models import load
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
    result = {
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
