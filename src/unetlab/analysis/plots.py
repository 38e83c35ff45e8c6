"""Figures of the analysis results (matplotlib, Agg backend, PNG): titled, labelled, with legends."""

from __future__ import annotations

import math
from pathlib import Path

from ..atomic import write
from .ablate import AblationGrid
from .perturb import Sensitivity
from .trace import TraceResult, part_kind

_CMAPS = {"encoder": "Blues", "skip": "Greens", "decoder": "Reds"}
_FIXED = {"stem": "0.55", "bottleneck": "purple", "head": "black"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    """Save a figure atomically as PNG and close it."""
    try:
        return write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        _plt().close(fig)


def _colours(parts: list[str]) -> dict[str, object]:
    """Encoder parts in blues, skips in greens, decoder parts in reds (darker = deeper in the list)."""
    plt = _plt()
    out = {}
    for kind, cmap in _CMAPS.items():
        names = [p for p in parts if part_kind(p) == kind]
        for i, p in enumerate(names):
            out[p] = plt.get_cmap(cmap)(0.4 + 0.5 * (i + 1) / len(names))
    for p in parts:
        out.setdefault(p, _FIXED.get(part_kind(p), "0.3"))
    return out


def plot_change_curves(
    trace: TraceResult,
    path,
    metric: str = "mse",
    x: str = "step",
    half: str | None = None,
    key_steps=None,
    skips: bool = False,
) -> Path:
    """Adjacent-step change per part over the steps (encoder blue, decoder red); key steps as vertical lines."""
    if x not in ("step", "log_snr"):
        raise ValueError(f"x: {x!r} is not one of step, log_snr")
    plt = _plt()
    xs = trace.steps if x == "step" else trace.log_snr
    parts = [p for p in trace.parts if skips or part_kind(p) != "skip"]
    colours = _colours(parts)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for p in parts:
        ys = trace.curve(p, metric, half)
        ax.plot(xs[1:], ys[1:], color=colours[p], label=p, lw=1.6 if part_kind(p) in ("encoder", "decoder") else 1)
    for i, s in enumerate(key_steps or []):
        ax.axvline(xs[s], color="0.3", ls=":", lw=0.8, label="key step" if i == 0 else None)
    if metric == "mse":
        ax.set_yscale("log")
    if x == "step":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("sampling step" if x == "step" else "log-SNR  log(ᾱ/(1−ᾱ))")
    ax.set_ylabel(f"{metric} to previous step")
    ax.set_title(
        f"Per-part change across steps ({trace.meta.get('model_class', '')}, "
        f"{trace.meta.get('num_inference_steps')} steps, {half or trace.default_half})"
    )
    ax.legend(fontsize=7, ncol=2, loc="best")
    return _save(fig, path)


def plot_norm_boxes(trace: TraceResult, path, half: str | None = None) -> Path:
    """Box plot over steps of each block's channel-averaged Frobenius norm (Faster Diffusion Fig. 3b)."""
    plt = _plt()
    parts = [p for p in trace.parts if part_kind(p) in ("encoder", "bottleneck", "decoder")]
    data = [[v for v in trace.curve(p, "fro_norm", half) if not math.isnan(v)] for p in parts]
    colours = _colours(parts)
    fig, ax = plt.subplots(figsize=(8, 4))
    box = ax.boxplot(data, patch_artist=True)
    ax.set_xticks(range(1, len(parts) + 1), parts, rotation=45, ha="right")
    for patch, p in zip(box["boxes"], parts):
        patch.set_facecolor(colours[p])
    handles = [plt.Rectangle((0, 0), 1, 1, color=_plt().get_cmap(c)(0.7)) for c in ("Blues", "Reds")]
    ax.legend(handles, ["encoder", "decoder"], fontsize=8)
    ax.set_ylabel("‖channel-mean map‖_F over steps")
    ax.set_title("Per-block feature norm across the sampling steps")
    return _save(fig, path)


def plot_ablation_heatmap(grid: AblationGrid, path, metric: str = "psnr") -> Path:
    """Component x window heatmap of the final-output change (PSNR in dB, capped at 60 for identical outputs)."""
    plt = _plt()
    m = [[min(v, 60.0) if metric == "psnr" else v for v in row] for row in grid.matrix(metric)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(grid.windows), 1 + 0.35 * len(grid.components)))
    im = ax.imshow(m, aspect="auto", cmap="viridis" if metric == "psnr" else "magma_r")
    ax.set_xticks(range(len(grid.windows)), [f"{a}-{b - 1}" for a, b in grid.windows])
    ax.set_yticks(range(len(grid.components)), grid.components)
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            bright = im.norm(v) > 0.6 if metric == "psnr" else im.norm(v) < 0.4
            ax.text(
                j,
                i,
                f"{v:.1f}" if metric == "psnr" else f"{v:.2g}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if bright else "white",
            )
    ax.set_xlabel("step window (first-last step)")
    ax.set_ylabel("eliminated component")
    fig.colorbar(im, ax=ax, label=f"{metric} vs unablated" + (" (dB)" if metric == "psnr" else ""))
    ax.set_title(f"Ablation grid (replace={grid.replace}): higher PSNR = component less needed")
    return _save(fig, path)


def plot_sensitivity(sens: Sensitivity, path, metric: str = "mse") -> Path:
    """Output change against the relative noise scale sigma, one line per resolution level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, row in zip(sens.levels, sens.matrix(metric)):
        ax.plot(sens.sigmas, row, marker="o", label=f"{r}x{r} features")
    ax.set_xscale("log")
    if metric == "mse":
        ax.set_yscale("log")
    ax.set_xlabel("relative noise scale σ (× feature std)")
    ax.set_ylabel(f"final-output {metric} vs clean run")
    ax.set_title("Perturbation sensitivity per resolution level")
    ax.legend()
    return _save(fig, path)
