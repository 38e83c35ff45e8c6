"""Where in time a likelihood model's diffusion term sits: its test-split bpd per tenth of t ∈ [0, 1].

The diffusion term is ∫₀¹ L(t) dt (VDM eq. 17); each band's share is (b − a)·E[L(t)] over t uniform in [a, b),
estimated in float64 with fresh noise (``--repeats`` draws per band, the standard error reported). Comparing
models band by band shows which noise levels a longer run or another score-network input improves.

    .venv/bin/python benchmarks/likelihood_bands.py 21600=runs/conv/VDMv-s0 64800=runs/conv65/VDMv-s0 \
        --out-dir docs/likelihood/bands
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

from likelihood import write_atomic, write_figure  # benchmarks/likelihood.py, beside this script

BANDS = 10


def band_bpd(model, x, repeats: int, seed: int) -> list[tuple[float, float]]:
    """(bpd, standard error) of each tenth of t: (b − a)·mean L(t) / (D ln 2) over ``repeats`` draws of t and ε."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(BANDS):
        draws = []
        with torch.no_grad():
            for _ in range(repeats):
                t = (i + torch.rand(x.shape[0], generator=g, dtype=torch.float64)) / BANDS
                eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
                draws.append(float(model.diffusion(x, t, eps).mean()) / (x[0].numel() * math.log(2)) / BANDS)
        m = sum(draws) / repeats
        se = math.sqrt(sum((d - m) ** 2 for d in draws) / (repeats - 1) / repeats)
        out.append((m, se))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="LABEL=RUN", help="a label and a run or model folder")
    parser.add_argument("--repeats", type=int, default=20, help="draws of t and ε per band (≥ 2)")
    parser.add_argument("--out-dir", default="docs/likelihood/bands")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats: {args.repeats} must be >= 2 (the standard error needs two draws)")
    pairs = [m.split("=", 1) for m in args.models]
    if any(len(p) != 2 or not p[0] for p in pairs):
        parser.error("models: each must be LABEL=RUN, e.g. 21600=runs/conv/VDMv-s0")

    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unetlab.commands.likelihood import model_dir
    from unetlab.data import dataset
    from unetlab.likelihood import load_model
    from unetlab.vdm import images_to_x

    torch.set_num_threads(1)
    test = dataset("digits", "test", 8)
    x = images_to_x(test[torch.arange(len(test))]["images"]).double()
    rows = []
    for name, run in pairs:
        model, cfg = load_model(model_dir(run))
        model = model.double().eval()
        bands = band_bpd(model, x, args.repeats, seed=0)
        edges = model.schedule(torch.linspace(0, 1, BANDS + 1, dtype=torch.float64))
        rows.append(
            {
                "label": name,
                "run": run,
                "config": asdict(cfg),
                "bands": bands,
                "gamma_edges": [float(g) for g in edges],
                "diffusion": sum(b for b, _ in bands),
            }
        )
    head = "| model | " + " | ".join(f"t {i / BANDS:.1f}–{(i + 1) / BANDS:.1f}" for i in range(BANDS)) + " | sum |"
    lines = [head, "|" + " --- |" * (BANDS + 2)]
    gammas = rows[0]["gamma_edges"]
    lines.append(
        "| γ(t) of the first model | "
        + " | ".join(f"{gammas[i]:.1f} … {gammas[i + 1]:.1f}" for i in range(BANDS))
        + " | |"
    )
    for r in rows:
        lines.append(
            f"| {r['label']} | " + " | ".join(f"{b:.3f}" for b, _ in r["bands"]) + f" | {r['diffusion']:.3f} |"
        )
    lines.append("")
    lines.append(
        f"bpd of the diffusion term per band, test split, float64, {args.repeats} draws of t and ε per band; "
        f"largest standard error of a cell {max(se for r in rows for _, se in r['bands']):.4f}."
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    mid = [(i + 0.5) / BANDS for i in range(BANDS)]
    for r in rows:
        ax.errorbar(
            mid,
            [b for b, _ in r["bands"]],
            yerr=[se for _, se in r["bands"]],
            marker="o",
            ms=3,
            capsize=2,
            label=f"{r['label']} (Σ {r['diffusion']:.3f})",
        )
    ax.set_xlabel("t (band centre)")
    ax.set_ylabel("diffusion term, bpd per tenth of t")
    ax.set_title("digits 8x8 test split: where the diffusion term sits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_figure(fig, out / "bands.png")
    write_atomic(out / "bands.md", "\n".join(lines) + "\n")
    write_atomic(out / "bands.json", json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
