"""Training task of the `mini-sd` judge (`unetlab.models.judge.SceneJudge`): cross-entropy summed over its heads
on real scenes of the train split."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import scenes
from ..models.judge import SceneJudge, targets
from ..seeding import seeded


class JudgeDataset:
    """`ds[indices] -> {"images", "targets"}`: scenes of the train split with every head's class index."""

    def __init__(self, seed: int = 0, length: int = 1_000_000):
        self.seed, self.length = seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices) -> dict:
        images, _, labels = scenes.scenes(torch.as_tensor(indices).reshape(-1).tolist(), self.seed, "train")
        return {"images": images, **{f"target:{k}": v for k, v in targets(labels).items()}}


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows with a target (0, not NaN, when a batch has none: a cell empty in all)."""
    total = F.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
    return total / (target != -100).sum().clamp_min(1)


class JudgeTask:
    """Sum over heads of the cross-entropy (empty cells' colour and size ignored)."""

    def __init__(self, seed: int = 0, width: int = 32, eval_scenes: int = 300):
        with seeded(seed):
            self.model = SceneJudge(width=width)
        self.dataset = JudgeDataset(seed)
        self.eval_images, _, self.eval_labels = scenes.sample(eval_scenes, seed=seed + 1, split="test")

    def modules(self) -> dict:
        return {"judge": self.model}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        logits = models["judge"](batch["images"])
        return sum(_cross_entropy(logits[k], batch[f"target:{k}"]) for k in logits)

    def evaluate(self, models: dict) -> dict:
        """Rates of reading every stated attribute right on real test-split scenes (`eval.judge.score_scenes`)."""
        from ..eval.judge import score_scenes

        seen, _ = models["judge"].read(self.eval_images)
        scores = score_scenes(self.eval_labels, seen)
        return {f"test_{k}": v for k, v in scores.items() if not k.endswith("_se")}

    def save(self, models: dict, directory: Path) -> None:
        models["judge"].save_pretrained(directory)
