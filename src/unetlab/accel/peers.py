"""The peer packages as published — DeepCache (PyPI `DeepCache`) and ToMe for SD (PyPI `tomesd`) — behind handles.

The adapters add no method of their own: they check that the package is installed and that it can
handle the pipeline (raising `UnsupportedPeerError` with the reason otherwise, so that a benchmark can
list the method as unsupported), apply the package's own patch, and undo it on `.remove()` so that the
pipeline computes exactly what it did before. Install both with `pip install "unetlab[peers]"`.
"""

from __future__ import annotations

import importlib

import torch

from ..patching import StepClock, resolve
from .handle import Handle


class UnsupportedPeerError(ValueError):
    """A peer package is missing or cannot run on the given pipeline; the message says why."""


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UnsupportedPeerError(
            f"{package} is not installed ({e}); install it with: pip install 'unetlab[peers]'") from None


class _Undo:
    def __init__(self, fn):
        self.remove = fn


class PeerHandle(Handle):
    """Claims the UNet for a peer package (stacking rules included) and undoes its patch on `.remove()`."""

    def __init__(self, unet, kind: str, config: dict):
        self.kind = kind
        super().__init__(unet, config)

    def undo_with(self, fn) -> None:
        """Register what `.remove()` must call to undo the package's patch."""
        self._add(_Undo(fn))


def check_deepcache(target, branch: int = 0) -> None:
    """Raise `UnsupportedPeerError` when DeepCache's `DeepCacheSDHelper` cannot run on `target`."""
    _import("DeepCache", "DeepCache")
    pipe, unet = resolve(target)
    if pipe is None:
        raise UnsupportedPeerError("deepcache: DeepCacheSDHelper needs a pipeline (it reads pipe.scheduler.timesteps), "
                                   "got a bare UNet")
    if unet.mid_block is None:
        raise UnsupportedPeerError("deepcache: DeepCacheSDHelper needs a UNet with a mid_block")
    if branch != 0 and unet.config.layers_per_block != 2:
        raise UnsupportedPeerError(
            f"deepcache: branch ids other than 0 assume 3 skips per level (layers_per_block=2); this UNet has "
            f"layers_per_block={unet.config.layers_per_block}")


def deepcache(target, interval: int = 3, branch: int = 0) -> PeerHandle:
    """DeepCache's own helper: `DeepCacheSDHelper(pipe).set_params(cache_interval, cache_branch_id)` then `.enable()`."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval: expected an int >= 1, got {interval!r}")
    if isinstance(branch, bool) or not isinstance(branch, int) or branch < 0:
        raise ValueError(f"branch: expected an int >= 0 (DeepCache's cache_branch_id), got {branch!r}")
    check_deepcache(target, branch)
    helper_cls = _import("DeepCache", "DeepCache").DeepCacheSDHelper
    pipe, unet = resolve(target)
    handle = PeerHandle(unet, "deepcache", dict(interval=interval, branch=branch))
    modules = list(unet.modules())
    had_forward = {id(m) for m in modules if "forward" in m.__dict__}
    helper = helper_cls(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    try:
        helper.enable()
    except Exception:
        handle.remove()
        raise

    def undo():
        helper.disable()
        for m in modules:  # the helper restores bound methods as instance attributes; drop those it added
            if id(m) not in had_forward:
                m.__dict__.pop("forward", None)

    handle.undo_with(undo)
    return handle


def _transformer_blocks(unet) -> list[torch.nn.Module]:
    return [m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock"]


def check_tome(target) -> None:
    """Raise `UnsupportedPeerError` when `tomesd.apply_patch` cannot run on `target`."""
    _import("tomesd", "tomesd")
    _, unet = resolve(target)
    blocks = _transformer_blocks(unet)
    if not blocks:
        raise UnsupportedPeerError(f"tome: tomesd merges tokens inside diffusers BasicTransformerBlocks; this "
                                   f"{type(unet).__name__} has none")
    norms = sorted({b.norm_type for b in blocks} - {"layer_norm"})
    if norms:
        raise UnsupportedPeerError(f"tome: tomesd's block forward supports norm_type 'layer_norm' only, got {norms}")


def tome(target, ratio: float = 0.5, max_downsample: int = 1, sx: int = 2, sy: int = 2, use_rand: bool = True,
         merge_attn: bool = True, merge_crossattn: bool = False, merge_mlp: bool = False, seed: int = 0) -> PeerHandle:
    """`tomesd.apply_patch` with its own arguments; its random draws use a generator seeded with `seed`
    at every pipeline call (tomesd would otherwise fork the global RNG)."""
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < 1 - 1 / (sx * sy):
        raise ValueError(f"ratio: expected a float in [0, {1 - 1 / (sx * sy)}) for sx={sx}, sy={sy}, got {ratio!r}")
    if max_downsample not in (1, 2, 4, 8):
        raise ValueError(f"max_downsample: expected 1, 2, 4 or 8, got {max_downsample!r}")
    check_tome(target)
    tomesd = _import("tomesd", "tomesd")
    pipe, unet = resolve(target)
    handle = PeerHandle(unet, "tome", dict(ratio=ratio, max_downsample=max_downsample, sx=sx, sy=sy,
                                           use_rand=use_rand, seed=seed))
    blocks = _transformer_blocks(unet)
    had = {name: {id(b) for b in blocks if name in b.__dict__} for name in ("use_ada_layer_norm",
                                                                             "use_ada_layer_norm_zero")}
    generator = torch.Generator(device=unet.device)

    def reseed():
        generator.manual_seed(seed)

    reseed()
    try:
        tomesd.apply_patch(unet, ratio=ratio, max_downsample=max_downsample, sx=sx, sy=sy, use_rand=use_rand,
                           merge_attn=merge_attn, merge_crossattn=merge_crossattn, merge_mlp=merge_mlp)
        unet._tome_info["args"]["generator"] = generator
        clock = StepClock(pipe.scheduler, on_start=reseed) if pipe is not None else None
    except Exception:
        tomesd.remove_patch(unet)
        handle.remove()
        raise

    def undo():
        if clock is not None:
            clock.remove()
        tomesd.remove_patch(unet)
        for m in [unet, *blocks]:  # remove_patch leaves `_tome_info` behind; on old diffusers it also adds flags
            m.__dict__.pop("_tome_info", None)
        for name, ids in had.items():
            for b in blocks:
                if id(b) not in ids:
                    b.__dict__.pop(name, None)

    handle.undo_with(undo)
    return handle
