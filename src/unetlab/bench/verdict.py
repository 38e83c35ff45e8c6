"""Which row is fastest at the baseline's quality: the bench report's one-line answer, per model, for unetlab's
recipes, the fewer-steps rows and the peers. "At the baseline's quality" is judged by the model's judge when it has
one (the judged rate within `points` of the baseline's, the Fréchet distance within `fd_ratio` of it), and by
fidelity, PSNR against the baseline's images of at least `psnr_floor` dB (the balanced presets' budget): a judge
that reads every row alike (mini-sd's today) cannot tell a row from the baseline, fidelity can."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..accel.peers import DeepCacheConfig, PABConfig, TaylorSeerConfig, TGateConfig, ToMeConfig

PEER_FAMILIES = tuple(c.family for c in (DeepCacheConfig, ToMeConfig, TGateConfig, PABConfig, TaylorSeerConfig))
GROUPS = ("unetlab", "fewer steps", "peers")


@dataclass(frozen=True)
class Criterion:
    """The baseline's quality: judged rate within `points`, Fréchet distance within `fd_ratio` (judged models,
    unless `fidelity`), else PSNR >= `psnr_floor` dB."""

    points: float = 0.01
    fd_ratio: float = 1.10
    psnr_floor: float = 38.0
    fidelity: bool = False

    def judged(self, base: dict) -> bool:
        """Whether the judge decides (the model has one and `fidelity` is off)."""
        return not self.fidelity and base.get("accuracy") is not None and base.get("fd") is not None

    def matches(self, row: dict, base: dict) -> bool:
        """Whether `row` is at `base`'s quality."""
        if self.judged(base):
            if row.get("accuracy") is None or row.get("fd") is None:
                return False
            return row["accuracy"] >= base["accuracy"] - self.points and row["fd"] <= self.fd_ratio * base["fd"]
        return row.get("psnr") is not None and row["psnr"] >= self.psnr_floor

    def describe(self, base: dict) -> str:
        if self.judged(base):
            return (
                f"judged rate within {100 * self.points:g} point(s) of the baseline's {base['accuracy']:.3f} and "
                f"Fréchet distance within {100 * (self.fd_ratio - 1):g}% of its {base['fd']:.2f}"
            )
        return f"PSNR >= {self.psnr_floor:g} dB against the baseline's images"


def group(row: dict) -> str | None:
    """ "unetlab", "fewer steps" or "peers" (None: the baseline)."""
    family = row.get("family")
    if family == "baseline":
        return None
    if family == "fewer-steps":
        return "fewer steps"
    return "peers" if family in PEER_FAMILIES else "unetlab"


def fastest(rows: list[dict], model: str, criterion: Criterion = Criterion()) -> dict[str, dict | None]:
    """Per group, the timed row of `model` with the highest wall speed-up among those at the baseline's quality."""
    mine = [r for r in rows if r["model"] == model and not r.get("unsupported")]
    base = next(r for r in mine if r.get("family") == "baseline")
    best: dict[str, dict | None] = dict.fromkeys(GROUPS)
    for r in mine:
        g = group(r)
        if g is None or r.get("speedup_wall") is None or not criterion.matches(r, base):
            continue
        current = best[g]
        if current is None or r["speedup_wall"] > current["speedup_wall"]:
            best[g] = r
    return best


def line(rows: list[dict], model: str, criterion: Criterion = Criterion()) -> str:
    """The report's one line for `model`: the fastest row of each group at the baseline's quality."""
    mine = [r for r in rows if r["model"] == model]
    base = next((r for r in mine if r.get("family") == "baseline"), None)
    if base is None or all(r.get("psnr") is None for r in mine):
        return f"**{model}**: speed only (no quality columns), no verdict."
    criteria = [criterion]
    if criterion.judged(base):
        criteria.append(dataclasses.replace(criterion, fidelity=True))
    clauses = []
    for c in criteria:
        best = fastest(rows, model, c)
        parts = [
            f"{g}: " + ("none" if r is None else f"{r['method']} {r['speedup_wall']:.2f}×") for g, r in best.items()
        ]
        clauses.append(f"by {c.describe(base)} — " + "; ".join(parts))
    return f"**{model}**, fastest at the baseline's quality " + ". And ".join(clauses) + "."
