"""Quality of generated images seen through the shipped judges (the roles CLIP score and FID play): classifier
accuracy and Fréchet distance by model name ("digits", "shapes": the evaluation classifiers; "mini-sd": the scene
judge)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..atomic import write
from ..data.shapes import ATTRIBUTES, parse_caption
from ..metrics import frechet_gaussian, gaussian_stats
from .classifier import CLASSIFIERS, heldout_data, load_classifier, weights_dir

CONFIDENCE = 0.9
REFERENCE_FILE = "reference_stats.safetensors"


@torch.no_grad()
def features(model_name: str, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Penultimate-layer features (N, 128) of images NCHW in [0, 1] under the shipped `model_name` classifier."""
    net = load_classifier(model_name)
    return torch.cat([net.features(images[i : i + batch].float()) for i in range(0, len(images), batch)])


@torch.no_grad()
def _probabilities(model_name: str, images: torch.Tensor, batch: int = 500) -> dict[str, torch.Tensor]:
    net = load_classifier(model_name)
    out: dict[str, list] = {}
    for i in range(0, len(images), batch):
        for k, v in net(images[i : i + batch].float()).items():
            out.setdefault(k, []).append(v.softmax(-1))
    return {k: torch.cat(v) for k, v in out.items()}


def accuracy(model_name: str, images: torch.Tensor, prompts_or_labels=None) -> dict:
    """Classifier agreement of generated `images` with what was asked.

    "digits": {"confident": fraction with max probability >= 0.9, "classes_present", "class_counts",
    and "accuracy" when labels are given}. "shapes": accuracy per attribute parsed from the prompts
    (shape, colour, position, background) and "overall" (all four right). "mini-sd": the scene judge's rates
    (`eval.mini_sd.accuracy`; "overall": all stated attributes right).
    """
    if model_name == "mini-sd":
        from .mini_sd import accuracy as judged

        return judged(images, list(prompts_or_labels or []))
    if model_name not in CLASSIFIERS:
        raise ValueError(f"model_name: {model_name!r} is not one of {', '.join(CLASSIFIERS)}")
    probs = _probabilities(model_name, images)
    if model_name == "digits":
        p = probs["digit"]
        conf, pred = p.max(-1)
        counts = torch.bincount(pred, minlength=10)
        result = {
            "confident": float((conf >= CONFIDENCE).float().mean()),
            "classes_present": int((counts > 0).sum()),
            "class_counts": counts.tolist(),
        }
        if prompts_or_labels is not None:
            labels = torch.as_tensor(prompts_or_labels).reshape(-1)
            result["accuracy"] = float((pred == labels).float().mean())
        return result
    if prompts_or_labels is None or len(prompts_or_labels) != len(images):
        raise ValueError("prompts_or_labels: shapes needs one prompt per image")
    parsed = [parse_caption(p) for p in prompts_or_labels]
    correct = {}
    for key, values in ATTRIBUTES.items():
        target = torch.tensor([values.index(a[key]) for a in parsed])
        correct[key] = probs[key].argmax(-1) == target
    result = {k: float(v.float().mean()) for k, v in correct.items()}
    result["overall"] = float(torch.stack(list(correct.values())).all(0).float().mean())
    return result


def reference_stats(model_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) of held-out real features: shipped next to the classifier, else computed once and cached."""
    from safetensors.torch import load_file, save_file

    shipped = weights_dir(model_name) / REFERENCE_FILE
    digest = hashlib.sha256((weights_dir(model_name) / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    root = Path(os.environ.get("UNETLAB_CACHE", Path.home() / ".cache" / "unetlab"))
    cache = root / f"{model_name}-{digest[:12]}-{REFERENCE_FILE}"
    for path in (shipped, cache):
        if path.is_file():
            stats = load_file(path)
            return stats["mu"], stats["sigma"]
    mu, sigma = gaussian_stats(features(model_name, heldout_data(model_name)[0]))
    write(cache, lambda tmp: save_file({"mu": mu, "sigma": sigma}, tmp))
    return mu, sigma


def judge_features(model_name: str, images: torch.Tensor) -> torch.Tensor:
    """The features (N, D) the judge of `model_name` reads from `images`: the classifier's penultimate layer, or
    mini-sd's scene judge's (the space of the Fréchet distance)."""
    if model_name == "mini-sd":
        from .mini_sd import load_judge

        return load_judge()[0].read(images.float())[1]
    return features(model_name, images)


def frechet_distance(model_name: str, images: torch.Tensor) -> float:
    """Fréchet distance between `images` and the held-out real split in the classifier's feature space (mini-sd:
    the judge's, against real test-split scenes)."""
    if model_name == "mini-sd":
        from .mini_sd import frechet_distance as judged

        return judged(images)
    mu, sigma = gaussian_stats(features(model_name, images))
    return frechet_gaussian(mu, sigma, *reference_stats(model_name))


def model_accuracy(model_name: str, images: torch.Tensor, labels) -> dict[str, float] | None:
    """The scalar results of `accuracy(model_name, images, labels)` as {"quality.<name>": value}; None when the
    judge's weights are not available."""
    labels = None if labels is None or any(x is None for x in labels) else list(labels)
    try:
        result = accuracy(model_name, images, labels)
    except (FileNotFoundError, OSError):
        return None
    return {f"quality.{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))}
