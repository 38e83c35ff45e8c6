"""The CoDi evaluation table (Markdown) and sample grid (condition | outputs | ground truth) from evaluated rows."""

from __future__ import annotations

from pathlib import Path

import torch

from ..train.grid import save_grid

COLUMNS = [
    ("psnr", "PSNR ↑", 2),
    ("ssim", "SSIM ↑", 3),
    ("consistency_psnr", "cond. PSNR ↑", 2),
    ("accuracy", "accuracy ↑", 3),
    ("all_correct", "all correct ↑", 3),
    ("shape", "shape ↑", 3),
    ("frechet", "Fréchet ↓", 1),
    ("seconds_per_image", "ms / image", 1),
]


def _cell(stat: dict, digits: int, scale: float = 1.0) -> str:
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['stderr'] * scale:.{digits}f}"


def table(rows: list[dict]) -> str:
    """Markdown: one line per (model, steps), mean ± s.e. over the sampling seeds, and each model's training; the
    columns are the metrics the rows have."""
    columns = [c for c in COLUMNS if rows and c[0] in rows[0]["metrics"]]
    head = "| model | sampler | steps | " + " | ".join(c[1] for c in columns) + " | training |"
    lines = [head, "|" + " --- |" * (len(columns) + 4)]
    for r in rows:
        cells = [_cell(r["metrics"][k], d, 1000.0 if k == "seconds_per_image" else 1.0) for k, _, d in columns]
        train = r.get("training")
        train_cell = f"{train['steps']} steps, {train['elapsed_s'] / 60:.1f} min" if train else "—"
        lines.append(f"| {r['label']} | {r['sampler']} | {r['steps']} | " + " | ".join(cells) + f" | {train_cell} |")
    return "\n".join(lines)


def grid(preview: torch.Tensor, outputs: list[torch.Tensor], truth: torch.Tensor, path: Path) -> Path:
    """One line per example: condition preview, each row's output, ground truth (all (n, C, H, W) in [0, 1])."""
    columns = [preview, *outputs, truth]
    images = torch.stack(columns, dim=1).flatten(0, 1)
    return save_grid(images, path, nrow=len(columns), scale=4)
