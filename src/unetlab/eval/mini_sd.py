"""The `mini-sd` judge and what it says about generated scenes: its rates (`eval.judge`), the Fréchet distance to
real test-split scenes, and their mean and standard error over seeds."""

from __future__ import annotations

import math

import torch

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
