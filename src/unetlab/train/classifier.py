"""Train the evaluation classifiers (`unetlab eval classifier`) with unetlab's training loop, and measure them on
held-out real data."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import write_json
from ..data import DigitsDataset, ShapesDataset
from ..eval.classifier import Classifier, build_classifier, heldout_data
from ..seeding import seeded
from .draws import Draws


def _shift(images: torch.Tensor, max_shift: int, draw: Draws) -> torch.Tensor:
    """Each image translated by an integer offset in [-max_shift, max_shift]^2 (edge padding)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.stack([draw.randint(2 * max_shift + 1, n), draw.randint(2 * max_shift + 1, n)], 1)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


class ClassifierTask:
    """Cross-entropy summed over the classifier's heads; digits get random 1-pixel shifts and contrast changes."""

    def __init__(self, name: str, seed: int = 0):
        self.name = name
        with seeded(seed):
            self.model = build_classifier(name)
        if name == "digits":
            self.dataset = DigitsDataset("train", 16)
        else:
            self.dataset = ShapesDataset("train", 24, length=1_000_000, seed=seed)

    def modules(self) -> dict:
        return {"classifier": self.model}

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.name == "digits":
            return {"digit": batch["labels"]}
        return {key: batch["attributes"][:, i] for i, key in enumerate(self.model.config.outputs)}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        images = batch["images"]
        if self.name == "digits":
            draw = Draws(batch, generator)
            images = _shift(images, 1, draw)
            gain = 0.8 + 0.4 * draw.rand(len(images)).view(-1, 1, 1, 1).to(images.device)
            images = (images * gain).clamp(0, 1)
        logits = models["classifier"](images)
        return sum(F.cross_entropy(logits[k], y) for k, y in self.targets(batch).items())

    def save(self, models: dict, directory: Path) -> None:
        models["classifier"].save_pretrained(directory)


@torch.no_grad()
def heldout_accuracy(classifier: Classifier, name: str, n: int = 2000) -> dict[str, float]:
    """Accuracy of each head on held-out real data (`heldout_data`; `n` shapes)."""
    images, targets = heldout_data(name, n)
    logits = {k: torch.cat(v) for k, v in _batched_logits(classifier, images).items()}
    return {k: float((logits[k].argmax(1) == y).float().mean()) for k, y in targets.items()}


def _batched_logits(classifier: Classifier, images: torch.Tensor, batch: int = 500) -> dict[str, list]:
    out: dict[str, list] = {}
    for i in range(0, len(images), batch):
        for k, v in classifier(images[i : i + batch]).items():
            out.setdefault(k, []).append(v)
    return out


def fit_classifier(
    name: str,
    out: str | Path,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> tuple[Path, dict[str, float]]:
    """Train the `name` classifier in unetlab's loop, then write to `out`/classifier its EMA weights, its held-out
    accuracy (metrics.json) and the held-out reference feature statistics for the Fréchet distance."""
    from safetensors.torch import save_file

    from ..checkpoint import latest
    from ..eval.scores import REFERENCE_FILE
    from ..metrics import gaussian_stats
    from .loop import TrainConfig, train

    task = ClassifierTask(name, seed)
    cfg = TrainConfig(
        out=str(out),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=50,
        ema_decay=0.995,
        checkpoint_every=max(1, steps // 4),
        seed=seed,
        resume=resume,
        progress=progress,
        run={"command": "eval classifier", "name": name},
    )
    state = train(task, cfg)
    exported = latest(Path(out)) / "pipeline"
    classifier = Classifier.from_pretrained(exported).eval()
    acc = heldout_accuracy(classifier, name)
    with torch.no_grad():
        mu, sigma = gaussian_stats(classifier.features(heldout_data(name)[0]))
    final = Path(out) / "classifier"
    final.mkdir(parents=True, exist_ok=True)
    classifier.save_pretrained(final)
    save_file({"mu": mu, "sigma": sigma}, final / REFERENCE_FILE)
    report = {
        "heldout_accuracy": acc,
        "steps": state["step"],
        "final_loss": state["history"][-1]["loss"],
        "train_seconds": state["elapsed_s"],
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    write_json(final / "metrics.json", report)
    return final, acc
