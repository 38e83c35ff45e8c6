"""Guidance reuse written by hand for the tests, without unetlab code: the UNet's forward is replaced by a function
that runs the model's own forward on slices of the guidance batch (one UNet call per pipeline step); the
accelerators stacked under it are written with plain forward hooks (branch caching's deep path) or pre-hooks
(encoder propagation's decoder inputs) keyed by the slot of the chunk being run."""

from __future__ import annotations

import contextlib
import inspect

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch.utils._pytree import tree_flatten, tree_unflatten


def _clone(out):
    if torch.is_tensor(out):
        return out.clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_clone(o) for o in out)
    return out


def _cut(value, batch: int, lo: int, hi: int):
    if torch.is_tensor(value):
        return value[lo:hi] if value.ndim and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {k: _cut(v, batch, lo, hi) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cut(v, batch, lo, hi) for v in value)
    return value


class Newton:
    """The differences of the last full steps and their divided differences, newest first (forecast by hand)."""

    def __init__(self, order: int):
        self.order, self.steps, self.diffs = order, [], []

    def add(self, s: int, deltas: list) -> None:
        new = [deltas]
        for i in range(min(self.order, len(self.steps))):
            h = s - self.steps[i]
            new.append([(a - b) / h for a, b in zip(new[-1], self.diffs[i])])
        self.diffs, self.steps = new, [s, *self.steps][: self.order + 1]

    def at(self, s: int) -> list:
        out, w = self.diffs[0], 1
        for i in range(1, len(self.diffs)):
            w *= s - self.steps[i - 1]
            out = [o + w * d for o, d in zip(out, self.diffs[i])]
        return out


@contextlib.contextmanager
def _plain_attention(unet, processors):
    modules = [m for m in unet.modules() if any(getattr(m, "processor", None) is p for p in processors)]
    saved = [m.processor for m in modules]
    for m in modules:
        m.processor = AttnProcessor2_0()
    try:
        yield
    finally:
        for m, p in zip(modules, saved):
            m.processor = p


@contextlib.contextmanager
def guidance_by_hand(
    pipe,
    chunks: int,
    cond: int,
    interval: int,
    order: int = 0,
    stop: float | None = None,
    split: bool = False,
    per_step: int = 1,
    also_full=None,
):
    """Every `interval` steps, and at the steps `also_full(step)` is true for, the whole batch (or, `split`, each
    chunk as its own call, the conditional first), the differences cond − chunk stored; otherwise the conditional
    rows only and chunk := cond − forecast difference; from step `stop` on every chunk := cond. The pipeline calls
    the UNet `per_step` times per step (views), each call with its own differences. A call whose batch differs from
    the first runs as it is. Yields `memo`: `view` (which of the step's calls), `slot` (the chunk call running: 0 the
    conditional), `rows` ((batch, lo, hi) of a call on some rows, else None) and `step`, for the hand-written
    accelerators under it."""
    unet = pipe.unet
    real = unet.forward
    sig = inspect.signature(type(unet).forward)
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])
    pag = getattr(pipe, "_pag_attn_processors", None) or ()
    memo = {"call": -1, "step": 0, "slot": 0, "batch": None, "view": 0, "rows": None}
    newtons = {}

    def forward(*args, **kwargs):
        kw = dict(sig.bind(*args, **kwargs).arguments)
        return_dict = kw.pop("return_dict", True)
        memo["call"] += 1
        memo["step"], view = divmod(memo["call"], per_step)
        memo["view"] = view
        newton = newtons.setdefault(view, Newton(order))
        step, n = memo["step"], kw["sample"].shape[0]
        memo["batch"] = memo["batch"] or n
        memo["rows"] = None
        if n != memo["batch"]:
            memo["slot"] = 0
            out = real(**kw, return_dict=False)[0]
        else:
            size = n // chunks

            def run(i, slot):
                memo["slot"], memo["rows"] = slot, (n, i * size, (i + 1) * size)
                return real(**_cut(kw, n, i * size, (i + 1) * size), return_dict=False)[0]

            if stop is not None and step >= stop:
                with _plain_attention(unet, pag):
                    eps = [run(cond, 0)] * chunks
            elif step % interval == 0 or (also_full is not None and also_full(step)):
                if split:
                    firsts = [cond] + [i for i in range(chunks) if i != cond]
                    by_chunk = {i: run(i, slot) for slot, i in enumerate(firsts)}
                    eps = [by_chunk[i] for i in range(chunks)]
                else:
                    memo["slot"], memo["rows"] = 0, None
                    eps = list(real(**kw, return_dict=False)[0].chunk(chunks))
                newton.add(step, [eps[cond] - e for i, e in enumerate(eps) if i != cond])
            else:
                with _plain_attention(unet, pag):
                    eps_c = run(cond, 0)
                d = iter(newton.at(step))
                eps = [eps_c if i == cond else eps_c - next(d) for i in range(chunks)]
            out = torch.cat(eps)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    unet.forward = forward
    try:
        yield memo
    finally:
        del unet.forward


def deep_by_hand(unet, names: list[str], interval: int, memo: dict, order: int = 0):
    """Branch caching under it: outside steps `interval` apart each named module's output is a copy of the one its
    slot stored at its last full call (`order` > 0: its Newton forecast from the slot's full calls), cut to the rows
    of a call on some rows of the stored batch (forward hooks; the modules still run). Returns the hook handles."""
    store = {}

    def hook(name):
        def fn(module, args, out):
            key = (memo["view"], memo["slot"], name)
            if memo["step"] % interval == 0 or key not in store:
                leaves, spec = tree_flatten(out)
                newton = store[key][1] if key in store else Newton(order)
                newton.add(memo["step"], leaves)
                store[key] = (spec, newton)
                return None
            spec, newton = store[key]
            kept = tree_unflatten(newton.at(memo["step"]), spec)
            return _clone(kept if memo["rows"] is None else _cut(kept, *memo["rows"]))

        return fn

    return [unet.get_submodule(n).register_forward_hook(hook(n)) for n in names]


def encoder_by_hand(unet, keys: set, memo: dict):
    """Encoder propagation (sequential) under it: outside key steps the decoder's inputs (the first up block's
    hidden state, every up block's skips) are those of the slot's last key call (pre-hooks). Returns the handles."""
    store = {}

    def pre(i):
        def fn(module, args, kwargs):
            key = (memo["view"], memo["slot"], i)
            if memo["step"] in keys or key not in store:
                store[key] = (kwargs["hidden_states"], kwargs["res_hidden_states_tuple"])
                return None
            hidden, res = store[key]
            return args, {
                **kwargs,
                "hidden_states": hidden if i == 0 else kwargs["hidden_states"],
                "res_hidden_states_tuple": res,
            }

        return fn

    return [b.register_forward_pre_hook(pre(i), with_kwargs=True) for i, b in enumerate(unet.up_blocks)]
