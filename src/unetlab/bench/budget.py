"""Quality budgets ("psnr>=35", "accuracy>=0.99", "lpips<=0.1") and the per-image quality values they bound.

Every value is measured against the full-step baseline sample from the same noise, image by image, and a set of
images scores the mean of its per-image values (as `unetlab bench` reports them):
- psnr: `unetlab.metrics.psnr_per_image` in dB (data range 1), each image capped at `PSNR_CAP` (100, identical
  images), so that the budget bounds `unetlab.metrics.mean_psnr`, the statistic of the bench's PSNR column;
- ssim: structural similarity (`unetlab.metrics.ssim`);
- accuracy: the shipped evaluation classifier's verdict per image (`unetlab.eval.accuracy`: `shapes` all four
  attributes of the prompt right, `digits` classified with confidence >= 0.9); models with a classifier only;
- lpips: LPIPS (Zhang et al. 2018) through torchmetrics, where torchmetrics' image extra (torchvision) is installed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..metrics import PSNR_CAP, psnr_per_image, ssim

LOWER = {"psnr": ">=", "ssim": ">=", "accuracy": ">=", "lpips": "<="}  # the direction each bound takes
RANGES = {"psnr": (0.0, PSNR_CAP), "ssim": (-1.0, 1.0), "accuracy": (0.0, 1.0), "lpips": (0.0, math.inf)}
_FORM = re.compile(r"^\s*([a-z]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


def lpips_available() -> bool:
    try:
        import torchvision  # noqa: F401
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # noqa: F401
    except ImportError:
        return False
    return True


def metrics_for(quality_model: str | None) -> list[str]:
    """The metric names a budget may use for a model (with or without a shipped evaluation classifier)."""
    names = ["psnr", "ssim"] + (["accuracy"] if quality_model is not None else [])
    return names + (["lpips"] if lpips_available() else [])


@dataclass(frozen=True)
class Budget:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def met(self, q: float) -> bool:
        return q >= self.value if self.op == ">=" else q <= self.value

    def slack(self, q: float) -> float:
        """How far `q` is on the good side of the bound (negative: missed)."""
        return q - self.value if self.op == ">=" else self.value - q

    @property
    def sign(self) -> int:
        """+1 where higher quality is better (a lower bound), -1 where lower is (an upper bound)."""
        return 1 if self.op == ">=" else -1


def parse_budget(text: str, quality_model: str | None = None) -> Budget:
    """A `Budget` from "METRIC>=VALUE" / "METRIC<=VALUE"; a one-line error naming what is valid for the model."""
    valid = metrics_for(quality_model)
    m = _FORM.match(str(text))
    if not m:
        raise ValueError(
            f"budget: expected METRIC>=VALUE or METRIC<=VALUE (e.g. psnr>=35, accuracy>=0.99, lpips<=0.1), got {text!r}"
        )
    metric, op, raw = m.groups()
    if metric not in LOWER:
        raise ValueError(f"budget: unknown metric {metric!r}; valid for this model: {', '.join(valid)}")
    if metric not in valid:
        why = (
            "needs torchmetrics' LPIPS with torchvision, which is not installed"
            if metric == "lpips"
            else "needs a shipped evaluation classifier (digits, shapes)"
        )
        raise ValueError(f"budget: {metric} {why}; valid for this model: {', '.join(valid)}")
    if op != LOWER[metric]:
        raise ValueError(
            f"budget: {metric} is bounded {'below' if LOWER[metric] == '>=' else 'above'}; write "
            f"{metric}{LOWER[metric]}{raw}"
        )
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"budget: {raw!r} is not a number") from None
    lo, hi = RANGES[metric]
    if not (math.isfinite(value) and lo <= value <= hi) or (metric == "lpips" and value == 0):
        raise ValueError(
            f"budget: {metric} must be in [{lo:g}, {hi:g}]{' and > 0' if metric == 'lpips' else ''}, got {raw}"
        )
    return Budget(metric, op, value)


def per_image(
    images: torch.Tensor, reference: torch.Tensor, quality_model: str | None, labels, metrics: list[str]
) -> dict[str, list[float]]:
    """Each metric's value for every image against its reference (same noise)."""
    out: dict[str, list[float]] = {}
    pairs = [(images[i : i + 1], reference[i : i + 1]) for i in range(len(images))]
    if "psnr" in metrics:
        out["psnr"] = psnr_per_image(images, reference).clamp(max=PSNR_CAP).tolist()
    if "ssim" in metrics:
        out["ssim"] = [float(ssim(a, b)) for a, b in pairs]
    if "accuracy" in metrics:
        out["accuracy"] = _accuracy(quality_model, images, labels)
    if "lpips" in metrics:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
        rgb = (lambda x: x.expand(-1, 3, -1, -1)) if images.shape[1] == 1 else (lambda x: x)
        out["lpips"] = [float(lpips(rgb(a).clamp(0, 1), rgb(b).clamp(0, 1))) for a, b in pairs]
    return out


def _accuracy(quality_model: str, images: torch.Tensor, labels) -> list[float]:
    from ..eval import accuracy

    values = []
    for i in range(len(images)):
        acc = accuracy(quality_model, images[i : i + 1], None if labels is None else labels[i : i + 1])
        values.append(float(acc["overall"] if "overall" in acc else acc["confident"]))
    return values
