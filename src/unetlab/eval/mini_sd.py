"""`mini-sd`'s quality bars: samples for test-split captions, judged (`eval.judge`), over several seeds."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..data import scenes
from .judge import frechet, score_scenes

JUDGE = "judge-mini-sd"
REFERENCE_SCENES = 2000


def load_judge():
    """The shipped `mini-sd` judge (eval mode) and its reference statistics {"mu", "sigma", "train_test_frechet"}."""
    from safetensors.torch import load_file

    from ..models.judge import SceneJudge
    from ..models.registry import weights_path

    path = weights_path(JUDGE)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"judge: no shipped weights in {path}; train them with `unetlab train judge --data "
            "scenes` and ship them with scripts/ship_mini_sd.py"
        )
    judge = SceneJudge.from_pretrained(path).eval().float()
    return judge, load_file(path / "reference.safetensors")


@torch.no_grad()
def reference_stats(judge, n: int = REFERENCE_SCENES) -> dict[str, torch.Tensor]:
    """Judge-feature statistics of `n` real test-split scenes, and the real train-vs-test Fréchet distance."""
    from ..metrics import gaussian_stats

    _, test = judge.read(scenes.sample(n, seed=10_000, split="test")[0])
    _, train = judge.read(scenes.sample(n, seed=10_000, split="train")[0])
    mu, sigma = gaussian_stats(test)
    return {"mu": mu, "sigma": sigma, "train_test_frechet": torch.tensor(frechet(train, (mu, sigma)))}


def generate(
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


def accuracy(images: torch.Tensor, prompts: list[str]) -> dict[str, float]:
    """The judge's GenEval-style rates for images generated from mini-sd captions `prompts` ("overall": all
    stated attributes correct)."""
    if len(prompts) != len(images):
        raise ValueError(f"prompts: {len(prompts)} prompts for {len(images)} images; mini-sd needs one per image")
    judge, _ = load_judge()
    seen, _ = judge.read(images.float())
    rates = score_scenes([scenes.parse_caption(p) for p in prompts], seen)
    return {"overall": rates.pop("all_correct"), **rates}


def frechet_distance(images: torch.Tensor) -> float:
    """Fréchet distance of `images` to real test-split scenes in the judge's feature space."""
    judge, reference = load_judge()
    return frechet(judge.read(images.float())[1], (reference["mu"], reference["sigma"]))


def judge_images(judge, reference: dict, images: torch.Tensor, labels: list[dict]) -> dict[str, float]:
    """The judges' scores of images generated for scenes `labels`, and their Fréchet distance to real scenes."""
    seen, feats = judge.read(images)
    scores = score_scenes(labels, seen)
    scores["frechet"] = frechet(feats, (reference["mu"], reference["sigma"]))
    return scores


def over_seeds(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard error over seeds of every score."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        mean = sum(values) / len(values)
        se = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
            if len(values) > 1
            else 0.0
        )
        out[key] = {"mean": mean, "se": se}
    return out


def measure(
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
            judge, reference, generate(pipe, captions, steps, guidance_scale, seed, batch_size, progress), labels
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
    from ..atomic import write_json
    from ..models import load
    from ..train.grid import save_grid

    pipe = load(model)
    result = {"model": str(model), **measure(pipe, num_captions, steps, guidance_scale, seeds, batch_size)}
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
        save_grid(generate(pipe, captions, steps, guidance_scale, 0, batch_size, False), grid_path, nrow=8)
    if json_path:
        write_json(json_path, result)
    return result
