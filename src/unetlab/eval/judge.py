"""Scores of generated scenes against what their captions state, GenEval-style (Ghosh et al. 2023, Sec. 3): each
object's shape, colour and size, the object count, the position (one object) or the stated relation (two or
more), the background's colour and texture, and "all stated attributes correct"; plus a Fréchet distance on the
judge's features (Heusel et al. 2017, Eq. 6)."""

from __future__ import annotations

import itertools
import math

import torch

from ..data import scenes
from ..metrics import frechet_gaussian, gaussian_stats

OBJECT_ATTRIBUTES = ("shape", "colour", "size")


def _holds(relation: str, a: int, b: int) -> bool:
    return relation in scenes._relation(a, b)


def _match(stated: list[dict], seen: list[dict]) -> list[dict | None]:
    """The seen object assigned to each stated one: the injective assignment with the most agreeing attributes
    (shape, colour, size), ties broken by order; None where fewer objects were seen than stated."""
    if not seen:
        return [None] * len(stated)
    k = min(len(stated), len(seen))
    best, best_score = None, -1
    for picks in itertools.permutations(range(len(seen)), k):
        score = sum(stated[i][a] == seen[j][a] for i, j in enumerate(picks) for a in OBJECT_ATTRIBUTES)
        if score > best_score:
            best, best_score = picks, score
    return [seen[j] for j in best] + [None] * (len(stated) - k)


def score_scene(stated: dict, seen: dict) -> dict[str, bool]:
    """Which stated attributes of one scene (its label) the judge's reading `seen` gets right."""
    objs = stated["objects"]
    matched = _match(objs, seen["objects"])
    out = {"count": len(seen["objects"]) == len(objs)}
    for attr in OBJECT_ATTRIBUTES:
        out[attr] = all(m is not None and m[attr] == o[attr] for o, m in zip(objs, matched))
    if len(objs) == 1:
        out["position"] = matched[0] is not None and matched[0]["cell"] == objs[0]["cell"]
    else:
        out["relation"] = None not in matched[:2] and _holds(stated["relation"], matched[0]["cell"], matched[1]["cell"])
    out["background_colour"] = seen["background"]["colour"] == stated["background"]["colour"]
    out["texture"] = seen["background"]["texture"] == stated["background"]["texture"]
    out["all_correct"] = all(out.values())
    return out


def _mean_se(values: list[bool]) -> tuple[float, float]:
    n = len(values)
    p = sum(values) / n
    return p, math.sqrt(p * (1 - p) / n) if n > 1 else 0.0


def score_scenes(stated: list[dict], seen: list[dict]) -> dict[str, float]:
    """Rates over scenes of each stated attribute being right (`score_scene`), with "all_correct" also by number
    of objects ("all_correct_1obj", ...) and its standard error ("all_correct_se")."""
    if len(stated) != len(seen) or not stated:
        raise ValueError(f"labels: {len(stated)} stated and {len(seen)} read scenes; expected equal, non-zero counts")
    rows = [score_scene(a, b) for a, b in zip(stated, seen)]
    out = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        values = [r[key] for r in rows if key in r]
        out[key] = sum(values) / len(values)
    out["all_correct"], out["all_correct_se"] = _mean_se([r["all_correct"] for r in rows])
    for n in range(1, scenes.MAX_OBJECTS + 1):
        values = [r["all_correct"] for r, s in zip(rows, stated) if len(s["objects"]) == n]
        if values:
            out[f"all_correct_{n}obj"] = sum(values) / len(values)
    return out


def frechet(features: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Fréchet distance of `features` (N, D) to reference statistics (mu, sigma)."""
    return frechet_gaussian(*gaussian_stats(features), *reference)
