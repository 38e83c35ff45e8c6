"""Every accelerator on every tiny pipeline: the identity setting equals the plain pipeline bit for bit, an active
setting equals an independent plain-hook reference bit for bit, `.remove()` restores the plain pipeline, and
what cannot apply is refused at apply time with one line."""

from __future__ import annotations

import contextlib
import functools
import warnings

import pytest
import torch
from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list
from torch._dynamo.eval_frame import OptimizedModule

import unetlab.unet
from unetlab.accel import apply

from . import reference
from .matrix import ACCELERATORS, REFUSED, current_readme_section, section
from .pipelines import NAMES, build, run


@functools.cache
def _plain(name):
    pipe, kw = build(name)
    with torch.no_grad():
        return pipe, kw, run(pipe, kw)


def _own_forward(m) -> bool:
    """Whether `m` has an instance forward other than a `torch.compile` wrapper's own compiled one."""
    forward = m.__dict__.get("forward")
    if isinstance(m, OptimizedModule):
        return getattr(forward, "_torchdynamo_orig_callable", None) != m._orig_mod.__call__ or any(
            k.startswith("_unetlab") for k in m.__dict__
        )
    return forward is not None


def untouched(pipe) -> bool:
    """No hook, instance forward, claim or scheduler patch is left on the pipeline's models and scheduler."""
    models = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    mods = [m for model in models for m in model.modules()]
    return (
        not any(_own_forward(m) or hasattr(m, "_diffusers_hook") for m in mods)
        and not any("_unetlab_patches" in m.__dict__ for m in models)
        and not {"step", "set_timesteps", "_unetlab_step", "_unetlab_step_source"} & set(pipe.scheduler.__dict__)
    )


def deep_names(unet, shallow_levels=1) -> list[str]:
    n = len(unet.down_blocks)
    return (
        [f"down_blocks.{i}" for i in range(shallow_levels, n)]
        + (["mid_block"] if unet.mid_block is not None else [])
        + [f"up_blocks.{j}" for j in range(n - shallow_levels)]
    )


def reference_for(kind, config, pipe, num_steps):
    unet = pipe.unet
    if kind == "encoder_propagation":
        return reference.reuse_encoder(unet, set(range(0, num_steps, 2)))
    if kind == "branch_cache":
        return reference.reuse_outputs(unet, deep_names(unet, config.branch + 1), lambda s: s % config.interval == 0)
    if kind == "clockwork":
        return reference.reuse_outputs(unet, deep_names(unet, config.level), lambda s: s % config.clock == 0)
    w = config.plan.windows[0]
    return reference.reuse_outputs(unet, [w.component], lambda s: not w.start <= s < w.end, w.replace)


def compiled_graphs() -> int:
    """How many graphs torch.compile has traced in this process."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def cached_graphs(wrapper) -> int:
    """Graphs in dynamo's cache for the compiled UNet's forward and the split forward (encode, decode)."""
    codes = [type(wrapper._orig_mod).forward.__code__, unetlab.unet.encode.__code__, unetlab.unet.decode.__code__]
    return sum(len(_debug_get_cache_entry_list(c)) for c in codes)


@contextlib.contextmanager
def uncompiled(pipe):
    """The pipeline with its plain UNet for the reference (a compiled pipeline's patched runs are checked against
    the eager model with plain hooks)."""
    unet = pipe.unet
    pipe.unet = getattr(unet, "_orig_mod", unet)
    try:
        yield pipe
    finally:
        pipe.unet = unet


@pytest.mark.parametrize("kind", list(ACCELERATORS))
@pytest.mark.parametrize("name", NAMES)
def test_accelerator_on_pipeline(name, kind):
    pipe, kw, plain = _plain(name)
    identity, active = ACCELERATORS[kind]
    if (kind, name) in REFUSED:
        with pytest.raises((ValueError, TypeError, RuntimeError), match=REFUSED[(kind, name)][0]) as e:
            apply(pipe, identity)
        assert "\n" not in str(e.value) and untouched(pipe)
        return
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with apply(pipe, identity) as h:
            assert torch.equal(run(pipe, kw), plain)
            assert h.calls and all(full for _, full in h.calls)
        graphs = compiled_graphs()
        h = apply(pipe, active)
        try:
            out = run(pipe, kw)
            calls = list(h.calls)
        finally:
            h.remove()
        h.remove()  # idempotent
        assert not all(full for _, full in calls)  # something was reused
        if isinstance(pipe.unet, OptimizedModule):
            assert compiled_graphs() > graphs  # the patched calls ran compiled
            assert cached_graphs(pipe.unet) == 0  # none traced with the patches is left
        num_steps = max(s for s, _ in calls) + 1
        assert untouched(pipe)
        with uncompiled(pipe), reference_for(kind, active, pipe, num_steps):
            ref = run(pipe, kw)
        assert torch.equal(run(pipe, kw), plain)
    assert torch.equal(out, ref)
    assert not torch.equal(out, plain)


def test_readme_table_is_generated_from_the_matrix():
    assert current_readme_section() == section(), "README.md is stale: run python -m tests.compat.matrix"
