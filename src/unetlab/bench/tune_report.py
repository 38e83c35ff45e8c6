"""What `unetlab tune` shows: the Pareto front it found as a table, and a speed-vs-quality plot."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write
from .budget import JUDGED


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def front_table(result) -> str:
    """The Pareto front (predicted speed-up vs calibration quality) and the validated rows as Markdown; the chosen
    recipe in bold."""
    m = result.budget.figure  # a relative budget's rows show the ratio to the baseline on the same seeds
    lines = [
        (
            f"Pareto front ({len(result.front)} of {len(result.rows)} measured configurations), then the other "
            f"configurations validated; speed-up predicted by the cost model, wall speed-up measured (minimum times) "
            f"for those that met the budget on validation; {m} on the calibration and the validation seeds:"
        ),
        "",
        (
            f"| configuration | speed-up (predicted) | speed-up (FLOPs) | speed-up (wall) | {m} calibration | "
            f"{m} validation |"
        ),
        "|---|---|---|---|---|---|",
    ]
    rows = result.front + sorted(
        (r for r in result.rows if r["validation"] is not None and r not in result.front),
        key=lambda r: -r["speedup_predicted"],
    )
    for r in rows:
        name = f"**{r['name']} (chosen)**" if r["chosen"] else r["name"]
        lines.append(
            f"| {name} | {r['speedup_predicted']:.2f}× | {r['speedup_flops']:.2f}× | "
            f"{_fmt(r['speedup_wall'], '.2f')}{'×' if r['speedup_wall'] else ''} | "
            f"{r['calibration']:.3g} | {_fmt(r['validation'], '.3g')} |"
        )
    return "\n".join(lines) + "\n"


def _ylabel(b) -> str:
    if b.relative:
        return f"{b.metric} ÷ the baseline's (same seeds)"
    return f"{b.metric} (the judge)" if b.metric in JUDGED else f"{b.metric} vs the baseline sample"


def plot(result, path: Path) -> None:
    """Predicted speed-up against calibration quality for every configuration measured; the front, the validated
    configurations, the budget and the chosen recipe marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = result.budget
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fams = sorted({r["family"] for r in result.rows})
    for fam in fams:
        pts = [r for r in result.rows if r["family"] == fam]
        ax.scatter([r["speedup_predicted"] for r in pts], [r["calibration"] for r in pts], s=12, alpha=0.5, label=fam)
    front = sorted(result.front, key=lambda r: r["speedup_predicted"])
    ax.plot(
        [r["speedup_predicted"] for r in front],
        [r["calibration"] for r in front],
        "k-",
        lw=1,
        label="Pareto front (calibration)",
    )
    val = [r for r in result.rows if r["validation"] is not None]
    ax.scatter(
        [r["speedup_predicted"] for r in val], [r["validation"] for r in val], marker="x", c="k", label="validation"
    )
    chosen = [r for r in result.rows if r["chosen"]]
    ax.scatter(
        [r["speedup_predicted"] for r in chosen],
        [r["validation"] for r in chosen],
        marker="*",
        s=200,
        c="gold",
        edgecolors="k",
        label="chosen",
        zorder=5,
    )
    ax.axhline(b.value, color="r", ls=":", lw=1, label=f"budget {b}")
    ax.set(
        xlabel="speed-up over the baseline (×, cost model)",
        ylabel=_ylabel(b),
        title=f"unetlab tune: {result.recipe.tuned_on.get('model')}, {b}",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
