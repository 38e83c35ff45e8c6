"""The benchmark's outputs: bench.json (each row's `config` its recipe's `to_dict()`), bench.md, a Pareto plot and
sample grids, written atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..atomic import write, write_text
from .verdict import line as verdict_line

ROW_KEYS = (
    "model",
    "method",
    "config",
    "steps",
    "seconds_per_image",
    "speedup_wall",
    "speedup_flops",
    "peak_mem_mb",
    "psnr",
    "ssim",
    "accuracy",
    "fd",
)
_MARKERS = {
    "encoder-propagation": "o",
    "branch-cache": "s",
    "clockwork": "^",
    "block-skip": "D",
    "deepcache": "P",
    "tome": "X",
    "tgate": "p",
    "pab": "<",
    "taylorseer": ">",
    "guidance-reuse": "v",
    "combination": "*",
    "tuned": "h",
    "baseline": "k",
}


def validate(result: dict) -> None:
    """Raise ValueError when `result` does not follow the bench.json schema."""
    for key in ("machine", "date", "rows"):
        if key not in result:
            raise ValueError(f"bench.json: missing key {key!r}")
    for i, row in enumerate(result["rows"]):
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"bench.json: row {i} misses {missing}")
        for k in ROW_KEYS[4:]:
            if row[k] is not None and not isinstance(row[k], (int, float)):
                raise ValueError(f"bench.json: row {i} field {k!r} must be a number or null, got {row[k]!r}")


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _spread(row: dict) -> str:
    lo, hi = row.get("speedup_wall_min"), row.get("speedup_wall_max")
    return "" if lo is None or hi is None else f" ({lo:.2f}–{hi:.2f})"


def _unsettled(row: dict) -> str:
    return " †" if row.get("timing_settled") is False or row.get("timing_disagrees") else ""


def markdown(result: dict) -> str:
    """The table as Markdown: one row per method, unsupported methods with their reason."""
    compiled = bool(result.get("settings", {}).get("compile"))
    lines = [
        f"Machine: {result['machine']}  ",
        f"Date: {result['date']}  ",
        "Speed-up = the baseline's minimum seconds / the method's minimum seconds over the rounds of one run "
        "(one warm-up call each, then the method order rotated every round; a method whose fastest rounds spread "
        "by more than 25% or whose speed-up is more than 2x off its FLOPs ratio re-timed with the baseline, "
        "twice at most; † still so afterwards), min–max of the per-round paired ratios in brackets; "
        "FLOPs = UNet FLOPs per image (torch.utils.flop_counter); PSNR/SSIM against the baseline sample from "
        "the same noise, PSNR = mean_psnr (the mean over images of each one's PSNR capped at 100 = identical), "
        "SSIM the mean over images; perceptual = the judge's features of each image against the baseline's "
        "(unit-normalised, mean distance; 0 = the same reading); accuracy = the judge's rate (mini-sd and shapes: "
        "every attribute the prompt states read right; digits: confident fraction), FD = Fréchet distance to real "
        "images in the judge's feature space (a statistic of the set: noisy on few images); "
        "peak MB = resident-set growth during one timed call (CPU) or "
        "allocated CUDA memory growth."
        + (" **Speed only: random weights, no quality columns.**" if result.get("speed_only") else ""),
        *_settings(result.get("settings", {})),
        "",
        *(verdict_line(result["rows"], m) + "  " for m in dict.fromkeys(r["model"] for r in result["rows"])),
        "",
        "| model | method | steps | s/image | speed-up (wall) | speed-up (FLOPs) | peak MB | PSNR | SSIM | "
        "perceptual | accuracy | FD |" + (" compile s |" if compiled else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if compiled else ""),
    ]
    for r in result["rows"]:
        if r.get("unsupported"):
            lines.append(
                f"| {r['model']} | {r['method']} | {r['steps']} | unsupported: {r['unsupported']} | | | | | | | | |"
                + (" |" if compiled else "")
            )
            continue
        lines.append(
            f"| {r['model']} | {r['method']} | {r['steps']} | {_fmt(r['seconds_per_image'], '.4f')} | "
            f"{_fmt(r['speedup_wall'], '.2f')}×{_spread(r)}{_unsettled(r)} | "
            f"{_fmt(r['speedup_flops'], '.2f')}× | "
            f"{_fmt(r['peak_mem_mb'], '.0f')} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['ssim'], '.3f')} | "
            f"{_fmt(r.get('perceptual'), '.3f')} | "
            f"{_fmt(r['accuracy'], '.3f')} | {_fmt(r['fd'], '.2f')} |"
            + (f" {_fmt(r.get('compile_s'), '.1f')} |" if compiled else "")
        )
    return "\n".join(lines) + "\n"


def _settings(settings: dict) -> list[str]:
    """The lines stating the shape, dtype and compilation the rows were timed at (random-weight architectures)."""
    if settings.get("arch") is None:
        return []
    scale = "full size" if settings["scale"] == 1 else f"channels / {settings['scale']}"
    size = settings["latent_size"]
    lines = [
        "",
        f"Shape: {settings['arch']} UNet, {scale}, {size}×{size} latent, {settings['dtype']}, baseline "
        f"{settings['baseline']}, {settings['timing_images']} image(s) per timed call.",
    ]
    if settings.get("compile"):
        lines.append(
            f"**Compiled: every timing is of the UNet under torch.compile(backend={settings['compile']!r})**; "
            "FLOPs from eager calls; each row applied once and its calls timed back to back (re-applying would "
            "compile again); compile s = the warm-up call (which compiles) less one timed call."
        )
    return lines


def _forecasts(row: dict) -> bool:
    """Whether a row's recipe forecasts a feature (`reuse="taylor1"`/`"taylor2"`) instead of copying it."""
    return any(a.get("reuse", "copy") != "copy" for a in (row["config"] or {}).get("accelerators", []))


def pareto_plot(result: dict, path: Path) -> None:
    """Wall speed-up against PSNR per model, one marker per method family, fewer-steps as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in result["rows"] if r["model"] == model and r["speedup_wall"] is not None]
        few = sorted(
            (r for r in rows if r["family"] == "fewer-steps" and r["psnr"] is not None), key=lambda r: r["speedup_wall"]
        )
        if few:
            ax.plot(
                [1.0] + [r["speedup_wall"] for r in few],
                [60] + [min(r["psnr"], 60) for r in few],
                "k--",
                lw=1,
                marker=".",
                label="fewer DDIM steps (baseline at 60)",
            )
        for i, (fam, marker) in enumerate(_MARKERS.items()):
            for forecast in (False, True):  # reuse="taylor1"/"taylor2" rows hollow, in their family's colour
                pts = [
                    r
                    for r in rows
                    if r["family"] == fam and r["psnr"] is not None and fam != "baseline" and _forecasts(r) == forecast
                ]
                if pts:
                    colour = dict(facecolors="none", edgecolors=f"C{i}") if forecast else dict(color=f"C{i}")
                    ax.scatter(
                        [r["speedup_wall"] for r in pts],
                        [min(r["psnr"], 60) for r in pts],
                        marker=marker,
                        s=50,
                        label=f"{fam}, forecast" if forecast else fam,
                        **colour,
                    )
        ax.axhline(30, color="grey", lw=0.5, ls=":")
        ax.set(
            title=f"{model}: speed vs fidelity",
            xlabel="wall-time speed-up vs baseline (×)",
            ylabel="PSNR vs baseline sample (dB, capped at 60)",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def sample_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save up to 2*nrow images (N, C, H, W in [0, 1]) as a PNG grid."""
    from PIL import Image

    x = images[: 2 * nrow].clamp(0, 1)
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    grid = torch.ones(c, rows * (h + 2), nrow * (w + 2))
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, r * (h + 2) : r * (h + 2) + h, col * (w + 2) : col * (w + 2) + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    img = Image.fromarray(arr[..., 0] if c == 1 else arr[..., :3]).resize(
        (arr.shape[1] * 3, arr.shape[0] * 3),
        Image.NEAREST,  # type: ignore[attr-defined]  # Pillow sets its enum aliases with globals(), unseen by mypy
    )
    write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_report(result: dict, images: dict, out: Path) -> None:
    """bench.json, bench.md, pareto.png and grids/<model>/<method>.png under `out`."""
    validate(result)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "bench.json", json.dumps(result, indent=1))
    write_text(out / "bench.md", markdown(result))
    pareto_plot(result, out / "pareto.png")
    for (model, method), ims in images.items():
        if ims.ndim == 4 and ims.shape[1] in (1, 3):
            d = out / "grids" / re.sub(r"[^\w.-]+", "_", model)
            d.mkdir(parents=True, exist_ok=True)
            sample_grid(ims, d / (re.sub(r"[^\w.-]+", "_", method) + ".png"))
