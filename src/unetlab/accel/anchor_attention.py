"""Anchor-based cross-frame attention (Fairy, Wu et al., CVPR 2024, arXiv 2312.13834) as a processor swap.

The UNet's self-attention layers (attn1) get a processor that sees each UNet batch as `copies x frames`
(guidance copies are contiguous chunks: CFG gives 2, InstructPix2Pix 3). In the anchor phase every anchor
frame attends to the keys/values of all anchors of its copy, which are cached per layer, step and call slot;
in the frame phase every other frame attends to the cached anchor keys/values of its copy, followed by its own
when `own_kv`. Outside a phase the original processors run, so a plain `pipe(...)` call is unchanged.
`unetlab.video.edit_video` drives the two phases; the step index comes from the pipeline's scheduler. The handle is
an `accel.handle.Handle` (claim, stacking table, `.remove()` in any order); `AnchorAttentionConfig` saves to and
loads from JSON (`accel.load_config`) and `accel.apply(pipe, config)` applies it.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from ..errors import StackingError
from ..patching import ForwardPatch, StepClock, claims, resolve
from .concurrency import RunOwner
from .config import AccelConfig
from .handle import Handle, uncompiled

KIND = "anchor_attention"
PHASES = ("anchors", "frames")
# Step accelerators that batch several steps (or rows that are not frames) into one UNet call.
REFUSED = {
    "encoder_propagation": "its parallel decoder runs several steps in one UNet batch, whose rows are not frames"
}


@dataclass(frozen=True)
class AnchorAttentionConfig(AccelConfig):
    """Exactly one of `anchors` (frame indices), `stride` (every `stride`-th frame from 0) or `count` (that many
    frames spread uniformly, first and last included); none given = `count=3`. `own_kv`: a non-anchor frame also
    attends to its own keys/values (False: to the anchors' only, as Text2Video-Zero's first-frame attention)."""

    kind = KIND
    family = "anchor-attention"
    anchors: tuple[int, ...] | None = None
    stride: int | None = None
    count: int | None = None
    own_kv: bool = False

    def __post_init__(self):
        given = [k for k in ("anchors", "stride", "count") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"anchors: give one of anchors, stride or count, got {' and '.join(given)}")
        if not given:
            object.__setattr__(self, "count", 3)
        if self.anchors is not None:
            idx = tuple(self.anchors) if isinstance(self.anchors, (list, tuple)) else None
            if (
                not idx
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx)
                or any(b <= a for a, b in itertools.pairwise(idx))
            ):
                raise ValueError(
                    f"anchors: expected a strictly increasing, non-empty list of frame indices >= 0, "
                    f"got {self.anchors!r}"
                )
            object.__setattr__(self, "anchors", idx)
        for name in ("stride", "count"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if not isinstance(self.own_kv, bool):
            raise ValueError(f"own_kv: expected True or False, got {self.own_kv!r}")

    def apply_to(self, target) -> AnchorAttention:
        return AnchorAttention(target, self)

    def label(self) -> str:
        """Row name: "anchor attention <anchors|stride|count>=<value>" and "own kv" where frames see themselves."""
        name, value = next(
            (k, getattr(self, k)) for k in ("anchors", "stride", "count") if getattr(self, k) is not None
        )
        shown = ",".join(map(str, value)) if name == "anchors" else value
        return f"anchor attention {name}={shown}" + (" own kv" if self.own_kv else "")

    def indices(self, num_frames: int) -> tuple[int, ...]:
        """The anchor frame indices for a video of `num_frames` frames."""
        if num_frames < 1:
            raise ValueError("frames: the video is empty (0 frames); give at least one frame")
        if self.anchors is not None:
            if self.anchors[-1] >= num_frames:
                raise ValueError(
                    f"anchors: index {self.anchors[-1]} is out of range for a video of {num_frames} "
                    f"frames (valid: 0 to {num_frames - 1})"
                )
            return self.anchors
        if self.stride is not None:
            return tuple(range(0, num_frames, self.stride))
        assert self.count is not None  # __post_init__ leaves exactly one of anchors, stride and count set
        count = min(self.count, num_frames)
        return tuple(sorted({round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count)}))


def self_attention_layers(unet: torch.nn.Module) -> dict[str, Attention]:
    """The UNet's self-attention layers by module name; a one-line error when one has an unsupported processor."""
    layers = {}
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and not module.is_cross_attention:
            if type(module.processor) not in (AttnProcessor, AttnProcessor2_0):
                raise TypeError(
                    f"anchor_attention: layer {name} uses {type(module.processor).__name__}; supported "
                    "self-attention processors: AttnProcessor, AttnProcessor2_0"
                )
            layers[name] = module
    if not layers:
        raise TypeError(f"anchor_attention: this {type(unet).__name__} has no self-attention layer")
    return layers


class AnchorAttnProcessor:
    """Self-attention whose keys/values are the anchor frames' (Fairy's anchor-based attention), for one layer."""

    def __init__(self, handle: AnchorAttention, name: str, original):
        self.handle, self.name, self.original = handle, name, original

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None
    ):
        h, phase = self.handle, self.handle.phase
        if phase is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError(
                f"anchor_attention: layer {self.name} got encoder_hidden_states or an attention mask; "
                "anchor attention replaces plain self-attention only"
            )
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        shape4 = hidden_states.shape if hidden_states.ndim == 4 else None
        if shape4 is not None:
            hidden_states = hidden_states.view(*shape4[:2], -1).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch, n_tokens, _ = hidden_states.shape
        q = self._heads(attn, attn.to_q(hidden_states), attn.norm_q)
        kv: tuple[torch.Tensor, torch.Tensor] | None = None
        if phase == "anchors" or h.config.own_kv:
            k = self._heads(attn, attn.to_k(hidden_states), attn.norm_k)
            kv = (k, self._heads(attn, attn.to_v(hidden_states), None))
        out = h._attend(self.name, phase, q, kv)
        out = out.transpose(1, 2).reshape(batch, n_tokens, -1).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if shape4 is not None:
            out = out.transpose(-1, -2).reshape(shape4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @staticmethod
    def _heads(attn: Attention, x: torch.Tensor, norm) -> torch.Tensor:
        x = x.view(x.shape[0], -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
        return norm(x) if norm is not None else x


def _by_copy(x: torch.Tensor, copies: int) -> torch.Tensor:
    """(copies * frames, heads, N, d) -> (copies, heads, frames * N, d): a copy's frames as one token sequence."""
    b, heads, n, d = x.shape
    return x.view(copies, b // copies, heads, n, d).transpose(1, 2).reshape(copies, heads, -1, d)


class _Processors:
    """The anchor processors installed on the self-attention layers; `.remove()` puts the originals back."""

    def __init__(self, handle: AnchorAttention, layers: dict[str, Attention]):
        self.layers = layers
        self.originals = {name: attn.processor for name, attn in layers.items()}
        for name, attn in layers.items():
            # diffusers annotates the argument as its AttnProcessor class; any callable processor is accepted
            attn.set_processor(cast(AttnProcessor, AnchorAttnProcessor(handle, name, attn.processor)))

    def remove(self) -> None:
        for name, attn in self.layers.items():
            attn.set_processor(self.originals[name])
        self.layers = {}


class AnchorAttention(Handle):
    """Handle of applied anchor attention (context manager, `.remove()`); `phase(kind, num_frames)` sets what the
    next pipeline calls are. `kv_computed` counts, per phase, the frame rows whose keys/values were computed."""

    kind = KIND

    def __init__(self, target, config: AnchorAttentionConfig):
        pipe, unet = resolve(target)
        unet = uncompiled(unet)[0]
        for kind, why in REFUSED.items():
            if kind in claims(unet):
                raise StackingError(f"anchor_attention: does not compose with {kind} ({why}); remove it first")
        super().__init__(unet, config)
        self.phase: str | None = None
        self.kv_computed = {p: 0 for p in PHASES}
        self._frames, self._copies = 0, 0
        self._anchor_timesteps: list[float] | None = None
        self._step, self._slot, self._calls = -1, 0, 0
        self.clock: StepClock | None = None
        self.owner = RunOwner(KIND, pipe)
        self.clear()
        try:
            self._add(_Processors(self, self_attention_layers(unet)))
            self._add(ForwardPatch(unet, f"unetlab.{KIND}", self._forward))
            if pipe is not None:
                self.clock = self._add(StepClock(pipe.scheduler, on_start=self._on_start, on_enter=self._enter))
        except BaseException:
            self.remove()
            raise

    def clear(self) -> None:
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def anchors(self, num_frames: int) -> tuple[int, ...]:
        """The anchor frame indices of a video of `num_frames` frames."""
        return self.config.indices(num_frames)

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the cached anchor keys and values."""
        return sum(t.numel() * t.element_size() for kv in self._cache.values() for t in kv)

    @contextmanager
    def phase_of(self, kind: str, num_frames: int):
        """Within the block, every UNet batch holds `num_frames` frames per guidance copy: the anchors ("anchors";
        caches their keys/values, replacing any earlier cache) or other frames ("frames"; attends to the cache)."""
        if kind not in PHASES:
            raise ValueError(f"phase: expected one of {', '.join(PHASES)}, got {kind!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames: expected an int >= 1, got {num_frames!r}")
        if self.phase is not None:
            raise RuntimeError(f"phase: already in the {self.phase!r} phase; phases do not nest")
        self.owner.enter(start=True)
        if kind == "frames" and not self._cache:
            raise RuntimeError("phase: no anchor keys/values are cached; run the anchors in phase 'anchors' first")
        if kind == "anchors":
            self._cache, self._anchor_timesteps = {}, None
        self.phase, self._frames = kind, num_frames
        self._step, self._slot, self._calls = -1, 0, 0
        try:
            yield self
        finally:
            if kind == "anchors" and self.clock is not None:
                self._anchor_timesteps = list(self.clock.timesteps)
            self.phase = None

    def _enter(self, start: bool) -> None:
        """Calls inside a phase belong to the thread that opened it (`concurrency.RunOwner`)."""
        if self.phase is not None:
            self.owner.enter()

    def _on_start(self) -> None:
        self._step, self._slot = -1, 0
        if (
            self.phase == "frames"
            and self.clock is not None
            and self._anchor_timesteps not in (None, self.clock.timesteps)
        ):
            raise RuntimeError(
                "anchor_attention: this call's timesteps differ from the anchors' call; use the same "
                "num_inference_steps and scheduler for every batch of frames"
            )

    def _forward(self, original, *args, **kwargs):
        self._enter(False)
        if self.phase is not None:
            step = self.clock.step_index if self.clock is not None else self._calls
            self._calls += 1
            self._slot = self._slot + 1 if step == self._step else 0
            self._step = step
            for kind, why in REFUSED.items():
                if kind in claims(self.unet):
                    raise StackingError(f"anchor_attention: does not compose with {kind} ({why}); remove it")
            batch = (args[0] if args else kwargs["sample"]).shape[0]
            if batch % self._frames:
                raise RuntimeError(
                    f"anchor_attention: the UNet batch of {batch} rows is not a multiple of the "
                    f"{self._frames} frames of this {self.phase!r} phase"
                )
            self._copies = batch // self._frames
        return original(*args, **kwargs)

    def _attend(
        self, name: str, phase: str, q: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """softmax(q K_a^T / sqrt(d)) V_a with K_a, V_a the anchors' (and, given `kv`, the frame's own) keys/values;
        in the anchor phase `kv` (always computed there) is cached."""
        g, key = self._copies, (name, self._step, self._slot)
        if kv is not None:
            self.kv_computed[phase] += kv[0].shape[0] // g
            if phase == "anchors":
                self._cache[key] = (_by_copy(kv[0], g).detach(), _by_copy(kv[1], g).detach())
        if key not in self._cache:
            raise RuntimeError(
                f"anchor_attention: step {self._step} (call {self._slot}) of layer {name} has no "
                "cached anchor keys/values; run every batch with the anchors' steps and strength"
            )
        k_a, v_a = self._cache[key]
        if k_a.shape[0] != g:
            raise RuntimeError(
                f"anchor_attention: this batch has {g} guidance copies and the anchors had "
                f"{k_a.shape[0]}; use the same guidance settings for every batch"
            )
        if phase == "anchors" or kv is None:
            return (
                F.scaled_dot_product_attention(_by_copy(q, g), k_a, v_a)
                .view(g, q.shape[1], -1, *q.shape[2:])
                .transpose(1, 2)
                .reshape(q.shape)
            )
        k, v = kv
        m = q.shape[0] // g
        k_all = torch.cat([k_a.repeat_interleave(m, dim=0), k], dim=2)
        v_all = torch.cat([v_a.repeat_interleave(m, dim=0), v], dim=2)
        return F.scaled_dot_product_attention(q, k_all, v_all)


def anchor_attention(
    target, anchors=None, stride: int | None = None, count: int | None = None, own_kv: bool = False
) -> AnchorAttention:
    """Apply anchor attention to a diffusers pipeline or bare UNet; returns a handle (context manager, `.remove()`)."""
    return AnchorAttention(target, AnchorAttentionConfig(anchors=anchors, stride=stride, count=count, own_kv=own_kv))
