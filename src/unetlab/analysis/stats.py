"""Per-sample feature-change metrics and running (Welford / Chan) mean and spread per step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHANGE_METRICS = ("mse", "rel_l1", "cosine")
STATE_METRICS = ("fro_norm", "low_freq_share")
METRICS = CHANGE_METRICS + STATE_METRICS
LOW_FREQ_CUTOFF = 0.25  # cycles per pixel: half the Nyquist frequency


def change_metrics(x: torch.Tensor, prev: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample change from the previous step: MSE ‖x−p‖²/(d·s²) (Faster Diffusion eq. 2), ‖x−p‖₁/‖x‖₁ (block
    caching), and cosine similarity (DeepCache)."""
    x, prev = x.detach().flatten(1).double(), prev.detach().flatten(1).double()
    d = x - prev
    return {
        "mse": d.pow(2).mean(1),
        "rel_l1": d.abs().sum(1) / x.abs().sum(1),
        "cosine": F.cosine_similarity(x, prev, dim=1),
    }


def state_metrics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample Frobenius norm of the channel-averaged map (Faster Diffusion Fig. 3b) and the share of spectral
    energy at spatial frequencies below `LOW_FREQ_CUTOFF` cycles per pixel."""
    x = x.detach().double()
    out = {"fro_norm": x.mean(1).flatten(1).norm(dim=1)}
    if x.ndim == 4:
        power = torch.fft.fft2(x).abs().pow(2)
        fy = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64)[:, None]
        fx = torch.fft.fftfreq(x.shape[-1], dtype=torch.float64)[None, :]
        low = ((fy.pow(2) + fx.pow(2)).sqrt() <= LOW_FREQ_CUTOFF).to(power.dtype)
        total = power.flatten(1).sum(1)
        out["low_freq_share"] = (power * low).flatten(1).sum(1) / total
    else:
        out["low_freq_share"] = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    return out


class Running:
    """Count, mean and M2 per step index, updated with batches of values (Chan et al.'s parallel Welford)."""

    def __init__(self):
        self.n: list[int] = []
        self.mean: list[float] = []
        self.m2: list[float] = []

    def update(self, step: int, values: torch.Tensor) -> None:
        while len(self.n) <= step:
            self.n.append(0)
            self.mean.append(0.0)
            self.m2.append(0.0)
        v = values.detach().double().flatten()
        nb = v.numel()
        if nb == 0:
            return
        mb = float(v.mean())
        m2b = float((v - mb).pow(2).sum())
        na, ma = self.n[step], self.mean[step]
        n = na + nb
        delta = mb - ma
        self.mean[step] = ma + delta * nb / n
        self.m2[step] = self.m2[step] + m2b + delta * delta * na * nb / n
        self.n[step] = n

    def merge(self, other: Running) -> None:
        """Add the values `other` has seen (Chan et al.'s pairwise combination, step by step)."""
        for step, (nb, mb, m2b) in enumerate(zip(other.n, other.mean, other.m2)):
            while len(self.n) <= step:
                self.n.append(0)
                self.mean.append(0.0)
                self.m2.append(0.0)
            na, ma = self.n[step], self.mean[step]
            if nb == 0:
                continue
            n = na + nb
            delta = mb - ma
            self.mean[step] = ma + delta * nb / n
            self.m2[step] = self.m2[step] + m2b + delta * delta * na * nb / n
            self.n[step] = n

    def std(self) -> list[float]:
        """Sample standard deviation per step (0 for a single value, NaN for none)."""
        return [
            math.sqrt(m2 / (n - 1)) if n > 1 else (0.0 if n == 1 else float("nan")) for n, m2 in zip(self.n, self.m2)
        ]

    def to_dict(self, num_steps: int) -> dict:
        pad = num_steps - len(self.n)
        nan = [float("nan")] * pad
        mean = [m if n else float("nan") for m, n in zip(self.mean, self.n)]
        return {"mean": mean + nan, "std": self.std() + nan, "count": self.n + [0] * pad}
