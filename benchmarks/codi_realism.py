"""Issue 33's realism check of CoDi students, written apart from unetlab's metrics: scikit-learn's digits split and
upsampled as unetlab's loader does, held-out (test-split) conditions from unetlab's `degrade`, K-step outputs.

    nice -n 10 .venv/bin/python benchmarks/codi_realism.py digits-sr4-codi digits-sr4-pe-codi --steps 4

Per model and step count, over the held-out digits (fractions of images):
- realistic: the output's nearest-neighbour L2 distance at 8x8 (2x2 average) to the real train digits is at most the
  95th percentile of the held-out real digits' own nearest-neighbour distances (so real digits pass at 95 %);
- consistent: PSNR >= 25 dB between the output degraded again and its condition (sr4: at 4x4; inpaint: the known
  pixels);
- class kept: the shipped digit classifier's argmax equals the true label.
Targets (issue 33): realistic >= 0.85, consistent >= 0.90, class kept >= 0.90. Prints one JSON line per row.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

TARGETS = {"realistic": 0.85, "consistent": 0.90, "class_kept": 0.90}
CONSISTENT_DB = 25.0
REAL_QUANTILE = 0.95


def digits_split(size: int = 16) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train", "test"}: (images (N, 1, size, size) in [0, 1], labels), unetlab's fixed 80/20 split (seed 0)."""
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = round(0.2 * len(labels))
    out = {}
    for split, index in (("train", order[n_test:]), ("test", order[:n_test])):
        index = index.sort().values
        up = F.interpolate(images[index], size=(size, size), mode="bilinear", align_corners=False)
        out[split] = (up.clamp(0, 1), labels[index])
    return out


def at_8x8(images: torch.Tensor) -> torch.Tensor:
    """(N, 64) float64: 16x16 images averaged over 2x2 blocks."""
    return F.avg_pool2d(images.double(), images.shape[-1] // 8).flatten(1)


def nn_distance(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Each query's L2 distance to its nearest reference."""
    return torch.cdist(queries, references).min(dim=1).values


def per_image_psnr(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR (dB, peak 1) of each image pair, over the pixels where `weight` is 1 (all by default)."""
    weight = torch.ones_like(a) if weight is None else weight.expand_as(a)
    mse = ((a - b) ** 2 * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def consistency_db(task: str, outputs: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    if task == "sr4":
        return per_image_psnr(F.avg_pool2d(outputs, 4), condition)
    return per_image_psnr(outputs, condition[:, :-1], 1 - condition[:, -1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped CoDi names or CoDiPipeline folders")
    parser.add_argument("--steps", type=int, nargs="+", default=[4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N held-out digits (default: all 359)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--renoise", choices=("fresh", "ddim"), default=None, help="override the pipelines' renoise")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import unetlab
    from unetlab.codi import heldout_conditions
    from unetlab.eval.classifier import load_classifier

    split = digits_split()
    train, _ = split["train"]
    test, labels = (t[: args.limit] for t in split["test"])
    references = at_8x8(train)
    threshold = float(np.quantile(nn_distance(at_8x8(split["test"][0]), references).numpy(), REAL_QUANTILE))
    classifier = load_classifier("digits")
    print(json.dumps({"threshold_8x8": threshold, "heldout": len(test), "train": len(train)}))
    for name in args.models:
        pipe = unetlab.load(name)
        if args.renoise:
            pipe.register_to_config(renoise=args.renoise)
        task = "sr4" if pipe.adapter.config.condition_size < test.shape[-1] else "inpaint"
        condition = heldout_conditions(task, test, seed=0)
        for steps in args.steps:
            rows = []
            for seed in args.seeds:
                generator = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    out = pipe(image=condition, num_inference_steps=steps, generator=generator, output_type="pt")
                    outputs = out.images.float()
                    predicted = classifier(outputs)["digit"].argmax(-1)
                passed = {
                    "realistic": nn_distance(at_8x8(outputs), references) <= threshold,
                    "consistent": consistency_db(task, outputs, condition) >= CONSISTENT_DB,
                    "class_kept": predicted == labels,
                }
                rows.append({k: float(v.double().mean()) for k, v in passed.items()})
                rows[-1]["psnr"] = float(per_image_psnr(outputs, test).mean())
            summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            met = all(summary[k] >= v for k, v in TARGETS.items())
            head = {"model": name, "task": task, "renoise": pipe.config.renoise, "steps": steps, "seeds": args.seeds}
            print(json.dumps({**head, **summary, "met": met}))


if __name__ == "__main__":
    main()
