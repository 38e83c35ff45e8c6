"""Quality budgets ("psnr>=35", "allcorrect>=0.98*base", "fd<=1.1*base") and the quality values they bound.

Fidelity is measured against the full-step baseline sample from the same noise, image by image; a set of images
scores the mean of its per-image values (as `unetlab bench` reports them):
- psnr: `unetlab.metrics.psnr_per_image` in dB (data range 1), each image capped at `PSNR_CAP` (100, identical
  images), so that the budget bounds `unetlab.metrics.mean_psnr`, the statistic of the bench's PSNR column;
- ssim: structural similarity (`unetlab.metrics.ssim`);
- lpips: LPIPS (Zhang et al. 2018) through torchmetrics, where torchmetrics' image extra (torchvision) is installed.

The judges (`unetlab.eval`: the classifiers of `digits` and `shapes`, the scene judge of `mini-sd`) read each image
alone:
- accuracy: the judge's verdict per image (`shapes` all four attributes of the prompt right, `mini-sd` every
  attribute its caption states right, `digits` classified with confidence >= 0.9);
- allcorrect: every attribute the prompt states read right (`shapes`, `mini-sd`: the judges that read prompts);
- fd: the Fréchet distance (Heusel et al. 2017, Eq. 6) of the set's judge features to the real images' statistics,
  a statistic of the set, not a mean over images: each image's features are kept, a set of seeds scores the
  distance of its features' Gaussian (at least 2 images), and its standard error is the jackknife's over the seeds.

"METRIC>=VALUE" bounds the figure itself; "METRIC>=FACTOR*base" bounds it by FACTOR times the baseline's figure
on the same seeds (the judges' metrics only: the fidelity metrics compare with the baseline's own sample).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

import torch

from ..metrics import PSNR_CAP, frechet_gaussian, gaussian_stats, psnr_per_image, ssim

LOWER = {"psnr": ">=", "ssim": ">=", "accuracy": ">=", "allcorrect": ">=", "fd": "<=", "lpips": "<="}  # directions
RANGES = {
    "psnr": (0.0, PSNR_CAP),
    "ssim": (-1.0, 1.0),
    "accuracy": (0.0, 1.0),
    "allcorrect": (0.0, 1.0),
    "fd": (0.0, math.inf),
    "lpips": (0.0, math.inf),
}
POSITIVE = ("fd", "lpips")  # bounded above by a value that must be > 0
JUDGED = ("accuracy", "allcorrect", "fd")  # the judges' metrics: may be bounded relative to the baseline
SET_METRICS = ("fd",)  # statistics of a set of images, not means of per-image values
PROMPT_JUDGES = ("shapes", "mini-sd")  # the judges that read what a prompt states (allcorrect)
_FORM = re.compile(r"^\s*([a-z]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*(?:\*\s*(base)\s*)?$")
EXAMPLES = "e.g. psnr>=35, allcorrect>=0.98*base, fd<=1.1*base"


def lpips_available() -> bool:
    try:
        import torchvision  # noqa: F401
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # noqa: F401
    except ImportError:
        return False
    return True


def metrics_for(quality_model: str | None) -> list[str]:
    """The metric names a budget may use for a model (with or without a shipped judge)."""
    names = ["psnr", "ssim"]
    if quality_model is not None:
        names += ["accuracy"] + (["allcorrect"] if quality_model in PROMPT_JUDGES else []) + ["fd"]
    return names + (["lpips"] if lpips_available() else [])


@dataclass(frozen=True)
class Budget:
    metric: str
    op: str
    value: float
    relative: bool = False  # `value` x the baseline's figure on the same seeds

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}{'*base' if self.relative else ''}"

    def bound(self, base: float) -> float:
        """The bound on a set of seeds whose baseline figure is `base`."""
        return self.value * base if self.relative else self.value

    def slack(self, q: float, bound: float) -> float:
        """How far `q` is on the good side of `bound` (negative: missed)."""
        return q - bound if self.op == ">=" else bound - q

    @property
    def sign(self) -> int:
        """+1 where higher quality is better (a lower bound), -1 where lower is (an upper bound)."""
        return 1 if self.op == ">=" else -1

    @property
    def figure(self) -> str:
        """What a row's quality column shows: the metric, or its ratio to the baseline's for a relative budget."""
        return f"{self.metric} ÷ baseline" if self.relative else self.metric


def parse_budget(text: str, quality_model: str | None = None) -> Budget:
    """A `Budget` from "METRIC>=VALUE", "METRIC<=VALUE" or "METRIC>=FACTOR*base"; a one-line error naming what is
    valid for the model."""
    valid = metrics_for(quality_model)
    m = _FORM.match(str(text))
    if not m:
        raise ValueError(
            f"budget: expected METRIC>=VALUE, METRIC<=VALUE or METRIC>=FACTOR*base ({EXAMPLES}), got {text!r}"
        )
    metric, op, raw, base = m.groups()
    if metric not in LOWER:
        raise ValueError(f"budget: unknown metric {metric!r}; valid for this model: {', '.join(valid)}")
    if metric not in valid:
        raise ValueError(f"budget: {metric} {_needs(metric, quality_model)}; valid for this model: {', '.join(valid)}")
    if op != LOWER[metric]:
        raise ValueError(
            f"budget: {metric} is bounded {'below' if LOWER[metric] == '>=' else 'above'}; write "
            f"{metric}{LOWER[metric]}{raw}{'*base' if base else ''}"
        )
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"budget: {raw!r} is not a number") from None
    if base:
        if metric not in JUDGED:
            raise ValueError(
                f"budget: {metric} is measured against the baseline's own sample; give an absolute bound (e.g. "
                f"{metric}{op}{_example(metric)}); FACTOR*base applies to {', '.join(JUDGED)}"
            )
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"budget: the factor of base must be a number > 0, got {raw}")
        return Budget(metric, op, value, relative=True)
    lo, hi = RANGES[metric]
    if not (math.isfinite(value) and lo <= value <= hi) or (metric in POSITIVE and value == 0):
        raise ValueError(
            f"budget: {metric} must be in [{lo:g}, {hi:g}]{' and > 0' if metric in POSITIVE else ''}, got {raw}"
        )
    return Budget(metric, op, value)


def _needs(metric: str, quality_model: str | None) -> str:
    if metric == "lpips":
        return "needs torchmetrics' LPIPS with torchvision, which is not installed"
    if metric == "allcorrect" and quality_model is not None:
        return f"needs a judge that reads the prompt ({', '.join(PROMPT_JUDGES)}); the {quality_model} judge reads none"
    return "needs a shipped judge (digits, shapes, mini-sd)"


def _example(metric: str) -> str:
    return {"psnr": "32", "ssim": "0.95", "lpips": "0.1"}[metric]


def check_budget(budget: Budget, quality_model: str | None) -> Budget:
    """`budget` when a model with the judge `quality_model` can measure it; a one-line error otherwise."""
    valid = metrics_for(quality_model)
    if budget.metric not in valid:
        raise ValueError(
            f"budget: {budget.metric} {_needs(budget.metric, quality_model)}; valid for this model: {', '.join(valid)}"
        )
    return budget


def check_set_sizes(budget: Budget, calibration: int, validation: int, options=("calibration", "validation")) -> None:
    """A one-line error where a set metric's budget would be judged on fewer than 2 images of a seed set."""
    if budget.metric in SET_METRICS:
        for name, n in zip(options, (calibration, validation)):
            if n < 2:
                raise ValueError(
                    f"{name}: a {budget.metric} budget needs at least 2 images (a Fréchet distance is a statistic of "
                    f"a set), got {n}"
                )


class Judge:
    """The shipped judge of a model (`quality_model`), image by image: its verdicts and its features."""

    def __init__(self, quality_model: str):
        self.model = quality_model
        self._scene = None  # mini-sd's scene judge and its reference statistics, loaded once

    def _scene_judge(self):
        if self._scene is None:
            from ..eval.mini_sd import load_judge

            self._scene = load_judge()
        return self._scene

    def read(self, images: torch.Tensor, labels) -> tuple[dict[str, list[float]], torch.Tensor]:
        """({"accuracy": [...], "allcorrect": [...] (prompt judges)} per image, the images' features (N, D))."""
        if self.model == "mini-sd":
            from ..data import scenes
            from ..eval.judge import score_scene

            if labels is None or len(labels) != len(images):
                raise ValueError("labels: mini-sd's judge needs one caption per image")
            judge, _ = self._scene_judge()
            seen, feats = judge.read(images.float())
            right = [float(score_scene(scenes.parse_caption(p), s)["all_correct"]) for p, s in zip(labels, seen)]
            return {"accuracy": right, "allcorrect": right}, feats
        from ..eval import scores

        values = []
        for i in range(len(images)):
            acc = scores.accuracy(self.model, images[i : i + 1], None if labels is None else labels[i : i + 1])
            values.append(float(acc["overall"] if "overall" in acc else acc["confident"]))
        verdicts = {"accuracy": values, **({"allcorrect": values} if self.model in PROMPT_JUDGES else {})}
        return verdicts, scores.features(self.model, images).float()

    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of the real images' features the Fréchet distance compares with."""
        if self.model == "mini-sd":
            stats = self._scene_judge()[1]
            return stats["mu"], stats["sigma"]
        from ..eval import scores

        return scores.reference_stats(self.model)


def fd(features: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The Fréchet distance of a set of features (N >= 2, D) to the reference statistics; nan below 2 images."""
    if len(features) < 2:
        return math.nan
    return frechet_gaussian(*gaussian_stats(features), *reference)


def jackknife(statistic, items: list) -> float:
    """The jackknife standard error of `statistic(items)` (Efron & Stein 1981): sqrt((n-1)/n sum_i (theta_-i -
    mean)^2) over the leave-one-out values; inf where fewer than 3 items leave a set of 2."""
    n = len(items)
    if n < 3:
        return math.inf
    loo = [statistic(items[:i] + items[i + 1 :]) for i in range(n)]
    mean = statistics.fmean(loo)
    return math.sqrt((n - 1) / n * sum((v - mean) ** 2 for v in loo))


def per_image(
    images: torch.Tensor, reference: torch.Tensor, judge: Judge | None, labels, metrics: list[str]
) -> tuple[dict[str, list[float]], torch.Tensor | None]:
    """Each per-image metric of `metrics` for every image against its reference (same noise), and the judge's
    features of the images where `metrics` holds a set metric (else None)."""
    out: dict[str, list[float]] = {}
    pairs = [(images[i : i + 1], reference[i : i + 1]) for i in range(len(images))]
    if "psnr" in metrics:
        out["psnr"] = psnr_per_image(images, reference).clamp(max=PSNR_CAP).tolist()
    if "ssim" in metrics:
        out["ssim"] = [float(ssim(a, b)) for a, b in pairs]
    feats = None
    if judge is not None and any(m in metrics for m in JUDGED):
        verdicts, feats = judge.read(images, labels)
        out.update({m: v for m, v in verdicts.items() if m in metrics})
    if "lpips" in metrics:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
        rgb = (lambda x: x.expand(-1, 3, -1, -1)) if images.shape[1] == 1 else (lambda x: x)
        out["lpips"] = [float(lpips(rgb(a).clamp(0, 1), rgb(b).clamp(0, 1))) for a, b in pairs]
    return out, feats if any(m in metrics for m in SET_METRICS) else None
