"""The tuner's cost model: a pipeline call's wall time as a FLOP term plus a per-operator term.

On the small models unetlab ships a UNet call is dominated by per-operator overhead (encoder propagation's
parallel decoding gains 2.4x wall at 1.25x fewer FLOPs on `digits`), at Stable Diffusion size by FLOPs; so the
time of a call that samples b images is modelled as T = alpha * b * F + beta * K, with F the FLOPs per image
(torch.utils.flop_counter) and K the number of tensor operators dispatched (counted once, on one image; it does
not grow with the batch), and alpha, beta >= 0 fitted by least squares to the measured times of the tuning run.
Because both coefficients are non-negative, a configuration with fewer FLOPs and fewer operators than another
is faster under every fit: `cheaper` prunes on that before any time is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


def _linear(x, w, *rest) -> int:
    return 2 * x.numel() // x.shape[-1] * w.numel()


def _conv(x, w, *rest) -> int:
    """2 x output elements x (input channels per group x kernel area), as torch.utils.flop_counter.conv_flop."""
    n, _, *spatial_in = x.shape
    stride = rest[1] if len(rest) > 1 else 1
    out_elems = n * w.shape[0]
    for i, size in enumerate(spatial_in):
        s = stride[i] if isinstance(stride, (list, tuple)) else stride
        k = w.shape[2 + i]
        p = rest[2] if len(rest) > 2 else 0
        p = p[i] if isinstance(p, (list, tuple)) else p
        if isinstance(p, str):  # "same" / "valid"
            out_elems *= size if p == "same" else size - k + 1
        else:
            out_elems *= (size + 2 * p - k) // s + 1
    return 2 * out_elems * w[0].numel()


def _sdpa(q, k, v, *rest, **kw) -> int:
    """Q K^T and (softmax) V: two batched matmuls, as torch.utils.flop_counter.sdpa_flop."""
    batch = q.numel() // (q.shape[-2] * q.shape[-1])
    return 2 * batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


_FORMULAS = {
    torch.ops.aten.linear.default: _linear,
    torch.ops.aten.conv2d.default: _conv,
    torch.ops.aten.scaled_dot_product_attention.default: _sdpa,
}


class Counter(TorchDispatchMode):
    """Counts the tensor operators dispatched inside the block and the FLOPs of its convolutions, linear layers and
    attention (torch.utils.flop_counter's formulas; its `FlopCounterMode` triples a call's time on these models)."""

    def __init__(self):
        super().__init__()
        self.ops = self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        out = func(*args, **kwargs)
        formula = _FORMULAS.get(func)
        if formula is not None:
            self.flops += formula(*args)
        elif func._overloadpacket in flop_registry:
            self.flops += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        return out


T = TypeVar("T")


def count(run: Callable[[], T]) -> tuple[T, int, int]:
    """(`run()`'s result, FLOPs, operators dispatched) of one call."""
    with torch.no_grad(), Counter() as c:
        out = run()
    return out, int(c.flops), c.ops


def cheaper(a: dict, b: dict) -> bool:
    """Whether counts `a` are at most `b` in both FLOPs and operators (so `a` is no slower under any fit)."""
    return a["flops"] <= b["flops"] and a["ops"] <= b["ops"]


def fit(samples: list[tuple[int, float, int, float]]) -> tuple[float, float]:
    """(alpha, beta) >= 0 minimising sum (T - alpha b F - beta K)^2 over samples (b, F, K, T)."""
    if not samples:
        raise ValueError("samples: the cost model needs at least one timed call")
    x = [(b * f, k, t) for b, f, k, t in samples]
    sxx, syy = sum(u * u for u, _, _ in x), sum(v * v for _, v, _ in x)
    sxy, sxt, syt = sum(u * v for u, v, _ in x), sum(u * t for u, _, t in x), sum(v * t for _, v, t in x)
    det = sxx * syy - sxy * sxy
    if det > 1e-12 * sxx * syy:
        alpha, beta = (sxt * syy - syt * sxy) / det, (syt * sxx - sxt * sxy) / det
        if alpha >= 0 and beta >= 0:
            return alpha, beta
    # on the boundary: the better of the one-term fits
    only_f, only_k = (max(sxt / sxx, 0.0), 0.0), (0.0, max(syt / syy, 0.0))
    return min((only_f, only_k), key=lambda ab: sum((t - ab[0] * u - ab[1] * v) ** 2 for u, v, t in x))


def predict(coef: tuple[float, float], counts: dict, batch: int) -> float:
    """Predicted seconds per image of a call sampling `batch` images."""
    alpha, beta = coef
    t = alpha * batch * counts["flops"] + beta * counts["ops"]
    return t / batch if math.isfinite(t) else math.inf
