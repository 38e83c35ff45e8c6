"""Reused module outputs: copies of (nested) outputs, and the state attention processors keep between calls (SAG's
store processor keeps the mid block's attention
map), saved when a module runs and put back when its output is reused instead, so that what the pipeline
reads next belongs to the same call slot as the reused output."""

from __future__ import annotations

import torch


def holders(modules) -> list[torch.nn.Module]:
    """The attention modules (anything with a `processor`) inside `modules`."""
    seen, out = set(), []
    for module in modules:
        for m in module.modules():
            if hasattr(m, "processor") and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
    return out


def snapshot(attention_modules) -> list:
    """(processor, its tensor attributes) for every processor that keeps tensors."""
    out = []
    for m in attention_modules:
        p = m.processor
        state = getattr(p, "__dict__", None)
        if state:  # most processors keep no attributes at all
            kept = {k: v for k, v in state.items() if torch.is_tensor(v)}
            if kept:
                out.append((p, kept))
    return out


def restore(saved) -> None:
    for p, kept in saved:
        p.__dict__.update(kept)


def map_tensors(out, fn):
    """Apply `fn` to every tensor in a (nested tuple of) module output(s), keeping the structure."""
    if torch.is_tensor(out):
        return fn(out)
    if isinstance(out, (tuple, list)):
        return type(out)(map_tensors(o, fn) for o in out)
    return out
