"""No accelerator, documented stack or forecasting order adds a device->host synchronisation per step."""

# A sync is a host read of a tensor on the pipeline's device: the Python reads (`Tensor.item`, `.tolist`,
# `.cpu`, `.numpy`, `bool()`, `int()`, `float()`, `operator.index`, `complex()`) and the aten ops that sync on
# CUDA (`_local_scalar_dense`, under every C++ `item()`; `nonzero`, `equal`, `masked_select`, `unique`,
# `repeat_interleave` with a tensor of repeats). The plain pipeline syncs by itself (DDIM's `step` reads its
# timestep), so each accelerated call is compared with the plain call at the same settings, at two step
# counts: the difference must be the same at both (zero per step) and a few at most (per call). Where CUDA
# exists the runs are repeated on it, every UNet call (the handles' per-call Python runs inside the UNet's
# forward) under `torch.cuda.set_sync_debug_mode("error")`, and the syncs of the whole call counted in "warn"
# mode (the scheduler's own `step` syncs, so the whole call cannot run under "error").

import collections
import contextlib
import functools
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import unetlab
from unetlab.accel.anchor_attention import AnchorAttention
from unetlab.accel.block_skip import SkipWindow
from unetlab.accel.clockwork_adaptor import ClockworkAdaptor
from unetlab.accel.handle import Accelerator
from unetlab.accel.peers import deepcache, tome
from unetlab.testing import tiny_sd_pipeline

STEPS = (6, 12)
FRAMES = 2  # anchor attention: each guidance copy of a batch holds 2 frames (num_images_per_prompt=2)
MOST_PER_CALL = 4
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "__complex__")
aten = torch.ops.aten
SYNC_OPS = {
    aten._local_scalar_dense,
    aten.nonzero,
    aten.equal,
    aten.masked_select,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
}
CUDA_SYNC = "called a synchronizing CUDA operation"
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _on(value, device: str) -> bool:
    return torch.is_tensor(value) and value.device.type == device


class _SyncOps(TorchDispatchMode):
    """Counts the aten ops that make the host wait for the device, on tensors of `device`."""

    def __init__(self, counts: collections.Counter, device: str):
        super().__init__()
        self.counts, self.device = counts, device

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if (packet in SYNC_OPS or func is aten.repeat_interleave.Tensor) and _on(args[0], self.device):
            self.counts[f"aten.{packet.__name__}"] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def counting(device: str):
    """A Counter of the host reads of `device` tensors in the block (CUDA: also the syncs "warn" reports)."""
    counts = collections.Counter()
    own = {name: torch.Tensor.__dict__.get(name) for name in READS}

    def counted(name, fn):
        @functools.wraps(fn)
        def read(self, *args, **kwargs):
            if _on(self, device):
                counts[f"Tensor.{name}"] += 1
            return fn(self, *args, **kwargs)

        return read

    for name in READS:
        setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    try:
        with contextlib.ExitStack() as stack:
            if device == "cuda":
                caught = stack.enter_context(warnings.catch_warnings(record=True))
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                stack.callback(torch.cuda.set_sync_debug_mode, "default")
                stack.callback(lambda: counts.update({"cuda sync": sum(CUDA_SYNC in str(w.message) for w in caught)}))
            stack.enter_context(_SyncOps(counts, device))
            yield counts
    finally:
        for name, fn in own.items():
            if fn is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, fn)


@contextlib.contextmanager
def unet_raises_on_sync(unet):
    """Every call of `unet` (its forward with the handles' patches) under `set_sync_debug_mode("error")`."""
    saved = []

    def enter(*_):
        saved.append(torch.cuda.get_sync_debug_mode())
        torch.cuda.set_sync_debug_mode("error")

    def leave(*_):
        torch.cuda.set_sync_debug_mode(saved.pop())

    hooks = [unet.register_forward_pre_hook(enter), unet.register_forward_hook(leave, always_call=True)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@functools.cache
def _pipeline(device: str):
    g = torch.Generator().manual_seed(0)
    pos, neg = (torch.randn(1, 5, 16, generator=g).to(device) for _ in range(2))
    kw = {
        "prompt_embeds": pos,
        "negative_prompt_embeds": neg,
        "height": 64,
        "width": 64,
        "num_images_per_prompt": FRAMES,
        "output_type": "latent",
    }
    return tiny_sd_pipeline().to(device), kw


def _call(pipe, kw, steps: int, device: str) -> collections.Counter:
    guard = unet_raises_on_sync(pipe.unet) if device == "cuda" else contextlib.nullcontext()
    with guard, counting(device) as counts:
        pipe(**kw, num_inference_steps=steps, generator=torch.Generator(device).manual_seed(1))
    return counts


@functools.cache
def _plain(device: str) -> dict:
    pipe, kw = _pipeline(device)
    return {n: _call(pipe, kw, n, device) for n in STEPS}


def _phases(handles) -> list:
    """The pipeline calls of one run: one, or anchor attention's anchors call then its frames call."""
    anchor = next((h for h in handles if isinstance(h, AnchorAttention)), None)
    if anchor is None:
        return [contextlib.nullcontext]
    return [functools.partial(anchor.phase_of, kind, FRAMES) for kind in ("anchors", "frames")]


def _active(handles) -> bool:
    """Whether the handles changed what ran (a cheap step, a skipped block, cached anchor keys)."""
    for h in handles:
        if isinstance(h, Accelerator) and any(not full for _, full in h.calls):
            return True
        if isinstance(h, AnchorAttention) and h.cache_bytes:
            return True
    return not any(isinstance(h, (Accelerator, AnchorAttention)) for h in handles)  # peers: nothing to read


def assert_constant_per_call(applies, device: str) -> None:
    """Each accelerated call adds the same host reads to the plain call's at both step counts, and few."""
    pipe, kw = _pipeline(device)
    plain = _plain(device)
    extra = {}
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(apply(pipe)) for apply in applies]
        for n in STEPS:
            for phase in _phases(handles):
                with phase():
                    counts = _call(pipe, kw, n, device)
                extra.setdefault(n, []).append(
                    {k: counts[k] - plain[n][k] for k in counts | plain[n] if counts[k] != plain[n][k]}
                )
        assert _active(handles), "the accelerators did not skip anything: the comparison would be vacuous"
    assert extra[STEPS[0]] == extra[STEPS[1]], f"host syncs change with the step count: {extra}"
    assert all(sum(map(abs, call.values())) <= MOST_PER_CALL for call in extra[STEPS[0]]), extra


def _adaptor(pipe):
    return unetlab.clockwork(pipe, clock=3, adaptor=ClockworkAdaptor.from_unet(pipe.unet, 1))


def _skip(pipe):
    return unetlab.block_skip(
        pipe, [SkipWindow("mid_block", 1, STEPS[1]), SkipWindow("up_blocks.0", 2, STEPS[1], "zeros")]
    )


ORDERS = ("copy", "taylor1", "taylor2")


def _ep(**config):
    return functools.partial(unetlab.encoder_propagation, **config)


SINGLE = {
    **{
        f"encoder_propagation-{mode}-{r}": _ep(key_steps="uniform:3", parallel=mode == "parallel", reuse=r)
        for mode in ("sequential", "parallel")
        for r in ORDERS
    },
    **{
        f"branch_cache-{g}-{r}": functools.partial(unetlab.branch_cache, interval=3, granularity=g, reuse=r)
        for g in ("block", "layer")
        for r in ORDERS
    },
    "branch_cache-block-branch1": functools.partial(unetlab.branch_cache, interval=3, branch=1),
    **{f"clockwork-identity-{r}": functools.partial(unetlab.clockwork, clock=3, reuse=r) for r in ORDERS},
    "clockwork-adaptor": _adaptor,
    "block_skip": _skip,
    "anchor_attention": functools.partial(unetlab.anchor_attention, anchors=[0]),
    **{f"guidance_reuse-{r}": functools.partial(unetlab.guidance_reuse, interval=3, reuse=r) for r in ORDERS},
    "guidance_reuse-stop_after": functools.partial(unetlab.guidance_reuse, interval=2, stop_after=0.5),
}
STACKS = {
    **{
        f"encoder_propagation+branch_cache-{r}": (
            _ep(key_steps="uniform:4", reuse=r),
            functools.partial(unetlab.branch_cache, interval=2, reuse=r),
        )
        for r in ORDERS
    },
    **{
        f"encoder_propagation+clockwork-{r}": (
            _ep(key_steps="uniform:4", reuse=r),
            functools.partial(unetlab.clockwork, clock=2, reuse=r),
        )
        for r in ORDERS
    },
    "encoder_propagation+clockwork-adaptor": (_ep(key_steps="uniform:4"), _adaptor),
    "branch_cache+anchor_attention": (
        functools.partial(unetlab.branch_cache, interval=3),
        functools.partial(unetlab.anchor_attention, anchors=[0]),
    ),
    "clockwork+anchor_attention": (
        functools.partial(unetlab.clockwork, clock=3),
        functools.partial(unetlab.anchor_attention, anchors=[0]),
    ),
    **{
        f"{first}+guidance_reuse": (make, functools.partial(unetlab.guidance_reuse, interval=2, reuse="taylor1"))
        for first, make in (
            ("encoder_propagation", _ep(key_steps="uniform:3")),
            ("branch_cache", functools.partial(unetlab.branch_cache, interval=3)),
            ("clockwork", functools.partial(unetlab.clockwork, clock=3)),
        )
    },
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(SINGLE))
def test_an_accelerator_adds_no_host_sync_per_step(name, device):
    assert_constant_per_call([SINGLE[name]], device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(STACKS))
def test_a_documented_stack_adds_no_host_sync_per_step(name, device):
    assert_constant_per_call(STACKS[name], device)


@pytest.mark.parametrize("device", DEVICES)
def test_tome_alone_and_after_encoder_propagation_adds_no_host_sync_per_step(device):
    pytest.importorskip("tomesd")
    assert_constant_per_call([functools.partial(tome, ratio=0.5)], device)
    assert_constant_per_call([_ep(key_steps="uniform:3"), functools.partial(tome, ratio=0.5)], device)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="DeepCache's helper finds the step with "
    "list(timesteps).index(t.item()) at every UNet call: O(steps) syncs per step",
)
def test_deepcache_adds_host_syncs_per_step():
    pytest.importorskip("DeepCache")
    assert_constant_per_call([functools.partial(deepcache, interval=3)], "cpu")
