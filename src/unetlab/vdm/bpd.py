"""Bits per dimension of a VDM/DiffEnc bound over a data set, with its three terms separately (Kingma et al. 2021,
Eq. 11)."""

from __future__ import annotations

import math
import statistics

import torch
from tqdm.auto import tqdm

from .terms import nats_to_bpd

TERMS = ("reconstruction", "prior", "diffusion")


@torch.no_grad()
def evaluate_bpd(
    model, data: torch.Tensor, generator: torch.Generator, batch_size: int = 256, progress: bool = False
) -> dict[str, float]:
    """Mean bound in bpd (``total`` and each term) and the standard error of ``total`` over the examples of ``data``."""
    if data.ndim != 4 or data.shape[0] == 0:
        raise ValueError(f"data must be a non-empty (N, C, H, W) tensor, got shape {tuple(data.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dims = data[0].numel()
    per_term: dict[str, list[torch.Tensor]] = {k: [] for k in TERMS}
    for start in tqdm(range(0, data.shape[0], batch_size), disable=not progress, desc="bpd"):
        terms = model.terms(data[start : start + batch_size], generator)
        for k in TERMS:
            per_term[k].append(nats_to_bpd(terms[k].detach(), dims))
    values = {k: torch.cat(v).double() for k, v in per_term.items()}
    total = sum(values.values())
    out = {k: float(v.mean()) for k, v in values.items()}
    out["total"] = float(total.mean())
    out["total_stderr"] = float(total.std() / math.sqrt(total.numel())) if total.numel() > 1 else float("nan")
    return out


def mean_of_passes(passes: list[dict[str, float]]) -> dict[str, float]:
    """`evaluate_bpd` results of several passes of noise: each term's mean and ``total_mc_stderr``, the standard
    error of the mean total over passes (the evaluation's own Monte-Carlo error on these images)."""
    if len(passes) < 2:
        raise ValueError(f"passes: {len(passes)} given, the spread needs at least 2")
    out = {k: sum(p[k] for p in passes) / len(passes) for k in passes[0] if k != "total_stderr"}
    out["total_mc_stderr"] = statistics.stdev(p["total"] for p in passes) / math.sqrt(len(passes))
    return out
