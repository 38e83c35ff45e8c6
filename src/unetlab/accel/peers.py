"""The peers as published — DeepCache (PyPI `DeepCache`), ToMe for SD (`tomesd`), T-GATE (`tgate`), and diffusers'
own Pyramid Attention Broadcast and TaylorSeer cache hooks — behind handles, each with its config
(`DeepCacheConfig`, `ToMeConfig`, `TGateConfig`, `PABConfig`, `TaylorSeerConfig`), so that a peer is an
accelerator of a recipe like the others.

The adapters add no method of their own: they check that the package is installed and that it can
handle the pipeline (raising `UnsupportedPeerError` with the reason otherwise, so that a benchmark can
list the method as unsupported), apply the package's own patch with what it needs to act on a UNet, and undo it
on `.remove()` so that the pipeline computes exactly what it did before. Install the packages with
`pip install "unetlab[peers]"`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, cast

import torch
from diffusers.models.modeling_utils import ModelMixin

from ..errors import UnsupportedError
from ..patching import StepClock, resolve
from .config import AccelConfig
from .handle import Handle

if TYPE_CHECKING:
    from diffusers.hooks.hooks import HookRegistry


class UnsupportedPeerError(UnsupportedError, ValueError):
    """A peer package is missing or cannot run on the given pipeline; the message says why."""


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UnsupportedPeerError(
            f"{package} is not installed ({e}); install it with: pip install 'unetlab[peers]'"
        ) from None


class _Undo:
    def __init__(self, fn):
        self.remove = fn


class PeerHandle(Handle):
    """Claims the UNet for a peer package (stacking rules included) and undoes its patch on `.remove()`."""

    def __init__(self, unet, config: AccelConfig):
        self.kind = config.kind
        super().__init__(unet, config)

    def undo_with(self, fn) -> None:
        """Register what `.remove()` must call to undo the package's patch."""
        self._add(_Undo(fn))


def _unet(target) -> tuple[Any, ModelMixin]:
    """`patching.resolve(target)` with the UNet typed as the diffusers model the peer packages patch."""
    pipe, unet = resolve(target)
    return pipe, cast(ModelMixin, unet)


def _check_ints(cfg, low: dict, what: str = "") -> None:
    """A one-line error naming the first field of `cfg` that is not an int >= its bound in `low`."""
    for name, bound in low.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < bound:
            raise ValueError(f"{name}: expected an int >= {bound}{what}, got {value!r}")


class _PeerConfig(AccelConfig):
    """A peer's arguments; `apply_to` calls the adapter of its kind with them."""

    def apply_to(self, target) -> PeerHandle:
        return _ADAPTERS[self.kind](target, **{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class DeepCacheConfig(_PeerConfig):
    """DeepCache's `cache_interval` (`interval`) and `cache_branch_id` (`branch`)."""

    kind = "deepcache"
    family = "deepcache"
    interval: int = 3
    branch: int = 0

    def label(self) -> str:
        return f"DeepCache pkg N={self.interval} B={self.branch}"

    def __post_init__(self):
        _check_ints(self, {"interval": 1})
        _check_ints(self, {"branch": 0}, " (DeepCache's cache_branch_id)")


@dataclass(frozen=True)
class ToMeConfig(_PeerConfig):
    """`tomesd.apply_patch`'s arguments (`max_downsample=None`: the first level with attention) and the seed of its
    random draws."""

    kind = "tome"
    family = "tome"
    ratio: float = 0.5
    max_downsample: int | None = None
    sx: int = 2
    sy: int = 2
    use_rand: bool = True
    merge_attn: bool = True
    merge_crossattn: bool = False
    merge_mlp: bool = False
    seed: int = 0

    def __post_init__(self):
        r, top = self.ratio, 1 - 1 / (self.sx * self.sy)
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r < top:
            raise ValueError(f"ratio: expected a float in [0, {top}) for sx={self.sx}, sy={self.sy}, got {r!r}")
        if self.max_downsample not in (None, 1, 2, 4, 8):
            raise ValueError(
                "max_downsample: expected 1, 2, 4, 8 or None (the first level with attention), got "
                f"{self.max_downsample!r}"
            )

    def label(self) -> str:
        return f"tomesd ratio={self.ratio}{self.non_default('ratio')}"


@dataclass(frozen=True)
class TGateConfig(_PeerConfig):
    """T-GATE's `gate_step`, `sp_interval`, `fi_interval` and `warm_up`."""

    kind = "tgate"
    family = "tgate"
    gate_step: int = 10
    sp_interval: int = 5
    fi_interval: int = 1
    warm_up: int = 2

    def __post_init__(self):
        _check_ints(self, {"gate_step": 0, "sp_interval": 1, "fi_interval": 1, "warm_up": 0}, " (T-GATE's argument)")

    def label(self) -> str:
        return f"T-GATE pkg gate={self.gate_step}{self.non_default('gate_step')}"


@dataclass(frozen=True)
class PABConfig(_PeerConfig):
    """Pyramid Attention Broadcast: self-attention recomputed every `spatial` calls, cross-attention every `cross`,
    inside `timestep_range`."""

    kind = "pab"
    family = "pab"
    spatial: int = 2
    cross: int = 4
    timestep_range: tuple = (100, 800)

    def __post_init__(self):
        _check_ints(self, {"spatial": 1, "cross": 1}, " (calls between recomputations)")
        r = self.timestep_range
        if not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(t, (int, float)) for t in r):
            raise ValueError(f"timestep_range: expected (low, high) timesteps, got {r!r}")
        object.__setattr__(self, "timestep_range", tuple(r))

    def label(self) -> str:
        return f"PAB (diffusers) spatial {self.spatial} cross {self.cross}{self.non_default('spatial', 'cross')}"


@dataclass(frozen=True)
class TaylorSeerConfig(_PeerConfig):
    """TaylorSeer: full during the first `warm_up` steps and every `interval` steps, an order-`order` Taylor
    forecast in between."""

    kind = "taylorseer"
    family = "taylorseer"
    interval: int = 5
    order: int = 1
    warm_up: int = 3

    def __post_init__(self):
        _check_ints(self, {"interval": 1, "order": 1, "warm_up": 1})

    def label(self) -> str:
        return f"TaylorSeer (diffusers) N={self.interval} order {self.order}{self.non_default('interval', 'order')}"


def check_deepcache(target, branch: int = 0) -> None:
    """Raise `UnsupportedPeerError` when DeepCache's `DeepCacheSDHelper` cannot run on `target`."""
    _import("DeepCache", "DeepCache")
    pipe, unet = _unet(target)
    if pipe is None:
        raise UnsupportedPeerError(
            "deepcache: DeepCacheSDHelper needs a pipeline (it reads pipe.scheduler.timesteps), got a bare UNet"
        )
    if unet.mid_block is None:
        raise UnsupportedPeerError("deepcache: DeepCacheSDHelper needs a UNet with a mid_block")
    if branch != 0 and unet.config.layers_per_block != 2:
        raise UnsupportedPeerError(
            f"deepcache: branch ids other than 0 assume 3 skips per level (layers_per_block=2); this UNet has "
            f"layers_per_block={unet.config.layers_per_block}"
        )


def deepcache(target, interval: int = 3, branch: int = 0) -> PeerHandle:
    """DeepCache's own helper: `DeepCacheSDHelper(pipe).set_params(cache_interval, cache_branch_id)` then
    `.enable()`."""
    config = DeepCacheConfig(interval, branch)
    check_deepcache(target, branch)
    helper_cls = _import("DeepCache", "DeepCache").DeepCacheSDHelper
    pipe, unet = resolve(target)
    handle = PeerHandle(unet, config)
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


def _transformer_blocks(unet) -> list[Any]:
    """The modules whose class is named BasicTransformerBlock (tomesd patches them by that name)."""
    return [m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock"]


def check_tome(target) -> None:
    """Raise `UnsupportedPeerError` when `tomesd.apply_patch` cannot run on `target`."""
    _import("tomesd", "tomesd")
    _, unet = resolve(target)
    blocks = _transformer_blocks(unet)
    if not blocks:
        raise UnsupportedPeerError(
            f"tome: tomesd merges tokens inside diffusers BasicTransformerBlocks; this {type(unet).__name__} has none"
        )
    norms = sorted({b.norm_type for b in blocks} - {"layer_norm"})
    if norms:
        raise UnsupportedPeerError(f"tome: tomesd's block forward supports norm_type 'layer_norm' only, got {norms}")


def _first_attention_downsample(unet) -> int:
    """The downsampling factor of the highest-resolution level with transformer blocks (1 on SD, 2 on SDXL)."""
    for i, block in enumerate(getattr(unet, "down_blocks", [])):
        if any(type(m).__name__ == "BasicTransformerBlock" for m in block.modules()):
            return min(2**i, 8)
    return 1


def tome(
    target,
    ratio: float = 0.5,
    max_downsample: int | None = None,
    sx: int = 2,
    sy: int = 2,
    use_rand: bool = True,
    merge_attn: bool = True,
    merge_crossattn: bool = False,
    merge_mlp: bool = False,
    seed: int = 0,
) -> PeerHandle:
    """`tomesd.apply_patch` with its own arguments; `max_downsample=None` is the first level with attention (tomesd's
    default 1 merges nothing on SDXL, whose first level has none); its random draws use a generator seeded with
    `seed` at every pipeline call (tomesd would otherwise fork the global RNG)."""
    config = ToMeConfig(ratio, max_downsample, sx, sy, use_rand, merge_attn, merge_crossattn, merge_mlp, seed)
    check_tome(target)
    tomesd = _import("tomesd", "tomesd")
    pipe, unet = _unet(target)
    max_downsample = max_downsample or _first_attention_downsample(unet)
    handle = PeerHandle(unet, replace(config, max_downsample=max_downsample))
    blocks = _transformer_blocks(unet)
    had = {
        name: {id(b) for b in blocks if name in b.__dict__}
        for name in ("use_ada_layer_norm", "use_ada_layer_norm_zero")
    }
    generator = torch.Generator(device=unet.device)

    def reseed():
        generator.manual_seed(seed)

    reseed()
    try:
        tomesd.apply_patch(
            unet,
            ratio=ratio,
            max_downsample=max_downsample,
            sx=sx,
            sy=sy,
            use_rand=use_rand,
            merge_attn=merge_attn,
            merge_crossattn=merge_crossattn,
            merge_mlp=merge_mlp,
        )
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


def _sd_loader(pipe):
    """T-GATE's loader for `pipe` (`TgateSDXLLoader` / `TgateSDLoader`), or None where neither drives it."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    tgate_pkg = _import("tgate", "tgate")
    if isinstance(pipe, StableDiffusionXLPipeline):
        return tgate_pkg.TgateSDXLLoader
    if isinstance(pipe, StableDiffusionPipeline):
        return tgate_pkg.TgateSDLoader
    return None


def check_tgate(target) -> None:
    """Raise `UnsupportedPeerError` when T-GATE's loaders cannot drive `target`."""
    _import("tgate", "tgate")
    pipe, _ = resolve(target)
    if pipe is None:
        raise UnsupportedPeerError("tgate: T-GATE replaces a pipeline's call (pipe.tgate), got a bare UNet")
    if _sd_loader(pipe) is None:
        raise UnsupportedPeerError(
            f"tgate: TgateSDLoader/TgateSDXLLoader run the steps of a StableDiffusion(XL)"
            f"Pipeline (encode_prompt, vae, image_processor); got {type(pipe).__name__}"
        )


def tgate(target, gate_step: int = 10, sp_interval: int = 5, fi_interval: int = 1, warm_up: int = 2) -> PeerHandle:
    """T-GATE (Liu et al., TMLR 2025) through its own loader: `pipe(...)` runs the loader's `pipe.tgate(...)` with
    these arguments (cross-attention cached and guidance dropped from step `gate_step` on, self-attention cached
    every `sp_interval` / `fi_interval` steps before / after it); `.remove()` undoes the loader and its attention
    patches, which T-GATE itself leaves in place after a call."""
    config = TGateConfig(gate_step, sp_interval, fi_interval, warm_up)
    check_tgate(target)
    pipe, unet = resolve(target)
    handle = PeerHandle(unet, config)
    attention = [m for m in unet.modules() if type(m).__name__ == "Attention"]
    had = {name: {id(m) for m in attention if name in m.__dict__} for name in ("forward", "cache")}
    cls = type(pipe)
    _sd_loader(pipe)(pipe)
    run = pipe.tgate

    def call(self, *args, **kwargs):
        if kwargs.get("guidance_scale", 7.5) <= 1:  # its own loop would fail unpacking a guidance batch of one
            raise UnsupportedPeerError("tgate: T-GATE's call needs classifier-free guidance (guidance_scale > 1)")
        return run(*args, **{**{f.name: getattr(config, f.name) for f in fields(config)}, **kwargs})

    pipe.__class__ = type(cls.__name__, (cls,), {"__call__": call, "__module__": cls.__module__})

    def undo():
        pipe.__class__ = cls
        pipe.__dict__.pop("tgate", None)
        for m in attention:  # T-GATE's forward and cache on every Attention module, also after the call
            for name, ids in had.items():
                if id(m) not in ids:
                    m.__dict__.pop(name, None)

    handle.undo_with(undo)
    return handle


def _hooked(unet, hook: str) -> list[HookRegistry]:
    """The diffusers hook registries of `unet`'s modules that hold `hook`."""
    registries = (getattr(m, "_diffusers_hook", None) for m in unet.modules())
    return [r for r in registries if r is not None and hook in getattr(r, "hooks", {})]


def _diffusers_hooks(pipe, unet, hook: str, apply, on_start, config: AccelConfig) -> PeerHandle:
    """A diffusers cache hook applied by `apply()` to the UNet's modules, `on_start(modules)` at the start of every
    pipeline call; `.remove()` removes the hook and what its registry left on each module."""
    kind = config.kind
    handle = PeerHandle(unet, config)
    modules = list(unet.modules())
    before = {id(m): set(m.__dict__) for m in modules}
    try:
        apply()
        hooked = _hooked(unet, hook)
        if not hooked:
            raise UnsupportedPeerError(f"{kind}: its module patterns match nothing in this {type(unet).__name__}")
        clock = StepClock(pipe.scheduler, on_start=lambda: on_start(hooked))
    except Exception:
        for registry in _hooked(unet, hook):
            registry.remove_hook(hook, recurse=False)
        _drop_new(modules, before)
        handle.remove()
        raise

    def undo():
        clock.remove()
        for registry in hooked:
            registry.remove_hook(hook, recurse=False)
        _drop_new(modules, before)

    handle.undo_with(undo)
    return handle


def _drop_new(modules, before: dict) -> None:
    """Drop the instance attributes (a registry, a restored `forward`) added to `modules` since `before`."""
    for m in modules:
        for name in set(m.__dict__) - before[id(m)]:
            del m.__dict__[name]


def _needs_pipeline(target, kind: str):
    pipe, unet = resolve(target)
    if pipe is None:
        raise UnsupportedPeerError(
            f"{kind}: needs a pipeline (its state is reset at the start of every call and "
            "read from the scheduler's step), got a bare UNet"
        )
    return pipe, unet


def pab(target, spatial: int = 2, cross: int = 4, timestep_range: tuple = (100, 800)) -> PeerHandle:
    """diffusers' Pyramid Attention Broadcast (Zhao et al. 2024) on the UNet: self-attention recomputed every
    `spatial` calls and cross-attention every `cross` calls while the timestep is inside `timestep_range`, the
    broadcast output reused in between. What it needs to act on a UNet: `current_timestep_callback` (here the
    timestep of the step the scheduler is at) and its states reset at the start of every pipeline call."""
    config = PABConfig(spatial, cross, timestep_range)
    pipe, unet = _needs_pipeline(target, "pab")
    from diffusers.hooks.pyramid_attention_broadcast import (
        PyramidAttentionBroadcastConfig,
        apply_pyramid_attention_broadcast,
    )

    def timestep() -> float:
        ts = clock_ref[0].timesteps
        begin = getattr(pipe.scheduler, "begin_index", None) or 0
        return ts[min(begin + clock_ref[0].step_index, len(ts) - 1)] if ts else 0.0

    clock_ref = [StepClock(pipe.scheduler)]
    cfg = PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=spatial,
        cross_attention_block_skip_range=cross,
        spatial_attention_timestep_skip_range=config.timestep_range,
        cross_attention_timestep_skip_range=config.timestep_range,
        current_timestep_callback=cast(Callable[[], int], timestep),  # diffusers types it int; it is only compared
    )
    try:
        handle = _diffusers_hooks(
            pipe,
            unet,
            "pyramid_attention_broadcast",
            lambda: apply_pyramid_attention_broadcast(unet, cfg),
            _reset,
            config,
        )
    except Exception:
        clock_ref[0].remove()
        raise
    handle.undo_with(clock_ref[0].remove)
    return handle


def _reset(hooked: list[HookRegistry]) -> None:
    for registry in hooked:
        registry.reset_stateful_hooks(recurse=False)


def taylorseer(target, interval: int = 5, order: int = 1, warm_up: int = 3) -> PeerHandle:
    """diffusers' TaylorSeer cache (Liu et al. 2025) on the UNet: every attention and feed-forward module computed
    during the first `warm_up` steps and every `interval` steps after, forecast by an order-`order` Taylor series
    from its last computations in between. What it needs to act on a UNet: the module patterns (its defaults,
    `^transformer_blocks.*attn`, match nothing there), a cache context on every hook's state, and a reset at the
    start of every pipeline call; factors kept in float32."""
    config = TaylorSeerConfig(interval, order, warm_up)
    pipe, unet = _needs_pipeline(target, "taylorseer")
    import re

    from diffusers.hooks.hooks import CacheContext
    from diffusers.hooks.taylorseer_cache import TaylorSeerCacheConfig, TaylorSeerCacheHook, apply_taylorseer_cache

    names = [re.escape(n) for n, m in unet.named_modules() if type(m).__name__ in ("Attention", "FeedForward")]
    cfg = TaylorSeerCacheConfig(
        cache_interval=interval,
        disable_cache_before_step=warm_up,
        max_order=order,
        taylor_factors_dtype=torch.float32,
        cache_identifiers=names,
    )

    def start(hooked: list[HookRegistry]) -> None:
        _reset(hooked)
        for registry in hooked:
            # `_hooked` chose the registries holding this hook; get_hook types it as the base ModelHook
            hook = cast(TaylorSeerCacheHook, registry.get_hook("taylorseer_cache"))
            hook.state_manager.set_context(CacheContext("unetlab"))

    return _diffusers_hooks(
        pipe,
        unet,
        "taylorseer_cache",
        lambda: apply_taylorseer_cache(unet, cfg) if names else None,
        start,
        config,
    )


_ADAPTERS: dict[str, Callable[..., PeerHandle]] = {
    "deepcache": deepcache,
    "tome": tome,
    "tgate": tgate,
    "pab": pab,
    "taylorseer": taylorseer,
}
