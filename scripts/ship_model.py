"""Copy a finished run's EMA pipeline into the package (models/weights/<name>/) with its model card.

python scripts/ship_model.py digits runs/digits --quality runs/digits-quality.json --grid runs/digits-grid.png
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from unetlab.atomic import write
from unetlab.bench.quality import BARS
from unetlab.checkpoint import latest
from unetlab.models.registry import weights_path

_DIGITS = (
    "unetlab train ddpm --data digits --out runs/digits --batch-size 128 --lr 1e-3 --checkpoint-every 500 "
    "--threads 1 --seed 0"
)
_SHAPES = (
    "unetlab train t2i --data shapes --out runs/shapes --batch-size 64 --lr 1.5e-3 --checkpoint-every 250 --seed 0"
)
COMMANDS = {
    "digits": [
        f"{_DIGITS} --steps 6000   # stopped after step 1000, then:",
        f"{_DIGITS} --steps 3500 --resume",
        "unetlab eval quality digits --json runs/digits-quality.json --grid runs/digits-grid.png",
    ],
    "shapes": [
        f"{_SHAPES} --threads 1 --steps 4000   # stopped after step 500, then:",
        f"{_SHAPES} --threads 1 --steps 2400 --resume   # stopped after step 1000, then:",
        f"{_SHAPES} --threads 1 --steps 3000 --resume   # stopped after step 2250, then:",
        f"{_SHAPES} --threads 1 --steps 4000 --resume",
        f"{_SHAPES} --threads 1 --steps 10000 --resume   # stopped after step 4750, then:",
        f"{_SHAPES} --threads 2 --steps 10000 --resume   # stopped after step 5000, then:",
        f"{_SHAPES} --threads 2 --steps 14000 --resume   # stopped after step 5500, then:",
        f"{_SHAPES} --threads 2 --steps 16000 --resume   # stopped after step 15000 (lr 0.11x, the floor is 0.1x)",
        "unetlab eval quality shapes --json runs/shapes-quality.json --grid runs/shapes-grid.png",
    ],
}
THREADS = {"digits": "one torch thread", "shapes": "one torch thread to step 4,750 and two from there"}
DATA = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits, train split (1,438 of 1,797 images, fixed seed-0 split; "
    "`unetlab.data.load_digits`), bilinearly upsampled to 16x16, 1 channel, scaled to [-1, 1].",
    "shapes": "procedural captioned shapes (`unetlab.data.ShapesDataset`, seed 0): a circle, square or triangle in one "
    "of 6 colours at one of 9 positions (3x3 grid) with random size and jitter, on a background of another "
    'of the 6 colours, RGB 24x24; captions like "a red circle at the top left on a blue background". '
    "10% of the 810 attribute combinations are held out of training and used for evaluation.",
}
ARCH = {
    "digits": "diffusers `UNet2DModel`, 16x16x1, block_out_channels (32, 64, 96), one resnet per level, self-attention "
    "at 4x4; epsilon prediction, DDPM squaredcos_cap_v2 schedule with 1000 training steps; sampled with "
    "`DDIMPipeline` (DDIMScheduler, 50 steps).",
    "shapes": "diffusers `UNet2DConditionModel`, 24x24x3 pixel space, block_out_channels (32, 64, 64), cross-attention "
    "at 6x6 and in the middle block (cross_attention_dim 64); `unetlab.models.TextEncoder` (word-level "
    "tokenizer over the caption vocabulary, 2-layer pre-norm Transformer, width 64) trained jointly; "
    'captions dropped to "" with probability 0.1 for classifier-free guidance; epsilon prediction, '
    "squaredcos_cap_v2 schedule with 1000 steps; sampled with `unetlab.models.ShapesPipeline` (DDIM, 50 "
    "steps, guidance 5, x0 clipped to [-1, 1] with the noise re-derived from it: "
    "`use_clipped_model_output=True`, the pipeline's default).",
}


def _table(quality: dict) -> str:
    rows = [
        f"| {k} | {v if not isinstance(v, float) else round(v, 4)} |" for k, v in quality.items() if k not in ("model",)
    ]
    return "| quantity | value |\n| --- | --- |\n" + "\n".join(rows)


def _verdict(name: str, quality: dict) -> str:
    missed = [k for k, ok in quality.get("passes", {}).items() if not ok]
    if not missed:
        return "All bars of issue 5 are met."
    parts = []
    for k in missed:
        bar, got = BARS[name][k], quality[k]
        parts.append(
            f"{k} {got:.3f} against >= {bar}" + (f" ({100 * (bar - got):.1f} points short)" if bar <= 1 else "")
        )
    return "**Bars missed**: " + "; ".join(parts) + "."


def _base_state(cfg: dict) -> dict | None:
    """The state of the checkpoint a fine-tuning run started from (`init_from` = <checkpoint>/pipeline), if known."""
    source = cfg.get("init_from")
    if not source or not (Path(source).parent / "state.json").is_file():
        return None
    state = json.loads((Path(source).parent / "state.json").read_text())
    scheduler = json.loads((Path(source) / "scheduler" / "scheduler_config.json").read_text())
    return {**state, "prediction_type": scheduler["prediction_type"]}


def _schedule(state: dict) -> str:
    cfg = state["config"]
    return (
        f"{state['step']} optimiser steps, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} (warm-up {cfg['warmup']} "
        f"steps, cosine decay to {cfg['min_lr_ratio']}x at step {cfg['steps']}), grad-clip {cfg['grad_clip']}, "
        f"EMA decay {cfg['ema_decay']}, seed {cfg['seed']}"
    )


def model_card(name: str, state: dict, quality: dict | None, size_mb: float, prediction_type: str = "epsilon") -> str:
    hist = state["history"]
    base = _base_state(state["config"])
    q = _table(quality) + "\n\n" + _verdict(name, quality) if quality else "(not measured yet)"
    training = _schedule(state) + " (these are the EMA weights)"
    elapsed = state["elapsed_s"]
    if base is not None:
        training = (
            f"{_schedule(base)}, {base['prediction_type']} prediction "
            f"(final loss {base['history'][-1]['loss']:.4f}); then "
            f"fine-tuned to {prediction_type}: {training}"
        )
        elapsed += base["elapsed_s"]
    return f"""# unetlab `{name}` model

Shipped with unetlab; load with `unetlab.load("{name}")`.

- **Data**: {DATA[name]}
- **Model**: {ARCH[name]}
- **Training**: {training}; unetlab's Accelerate loop.
- **Time and hardware**: {elapsed / 60:.0f} min of wall time on a 2-core CPU (no GPU), {THREADS[name]},
  shared with other jobs at times; 2026-11-23.
- **Final loss** (mean {prediction_type} MSE over the last checkpoint interval): {hist[-1]["loss"]:.4f}
- **Size**: {size_mb:.1f} MB of safetensors.

## Quality (issue 5 bars)

{q}

![samples](samples.png)

## Reproduce

```
{chr(10).join(COMMANDS[name])}
```
(`--steps` was changed while training, to fit the session's time on a shared CPU; each `--resume` continued from
the checkpoint named, so the learning-rate cosine was stretched or shrunk from that step on.)
"""


def ship(name: str, run: Path, quality_json: Path | None = None, grid: Path | None = None) -> Path:
    """Copy the latest EMA pipeline of `run` into the package with its card; returns the weights folder."""
    last = latest(run)
    if last is None:
        raise FileNotFoundError(f"run: {run} has no checkpoint")
    state = json.loads((last / "state.json").read_text())
    quality = json.loads(Path(quality_json).read_text()) if quality_json else None

    def fill(tmp: Path) -> None:
        shutil.copytree(last / "pipeline", tmp)
        shutil.copy(grid if grid else last / "samples.png", tmp / "samples.png")
        size = sum(p.stat().st_size for p in tmp.rglob("*.safetensors")) / 1e6
        prediction_type = json.loads((tmp / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
        (tmp / "README.md").write_text(model_card(name, state, quality, size, prediction_type))

    return write(weights_path(name), fill)


def ship_classifier(name: str, run: Path, command: str) -> Path:
    """Copy `run`/classifier (weights, reference statistics, metrics.json) into the package with a card."""
    src = Path(run) / "classifier"
    metrics = json.loads((src / "metrics.json").read_text())
    heads = ", ".join(f"{k} {v:.4f}" for k, v in metrics["heldout_accuracy"].items())
    held = (
        "the digits test split (359 images)"
        if name == "digits"
        else "2,000 shapes of the held-out attribute combinations (never seen in training)"
    )
    card = f"""# unetlab `{name}` evaluation classifier

A small CNN (`unetlab.eval.classifier.Classifier`: 5 conv layers, 128-d feature layer, one head per attribute)
used by `unetlab.eval.accuracy` and `unetlab.eval.frechet_distance` (its 128-d features;
`reference_stats.safetensors` holds the mean and covariance of the held-out real features).

- **Held-out accuracy** on {held}: {heads}
- **Training**: {metrics["steps"]} steps, batch {metrics["batch_size"]}, AdamW lr {metrics["lr"]}, EMA weights, seed
  {metrics["seed"]}; final loss {metrics["final_loss"]:.4f}; {metrics["train_seconds"] / 60:.1f} min on a 2-core CPU
  (no GPU), shared with other jobs; 2026-11-23.

## Reproduce

```
{command}
```
"""

    def fill(tmp: Path) -> None:
        shutil.copytree(src, tmp)
        (tmp / "README.md").write_text(card)

    return write(weights_path(f"classifier-{name}"), fill)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=("digits", "shapes"))
    p.add_argument("run", type=Path)
    p.add_argument("--quality", type=Path, default=None)
    p.add_argument("--grid", type=Path, default=None)
    args = p.parse_args()
    print(ship(args.name, args.run, args.quality, args.grid))


if __name__ == "__main__":
    main()
