"""The parts of a diffusers UNet: stem, encoder levels, bottleneck, decoder levels, head, with FLOP shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .flops import count_flops, flops_under
from .inputs import example_inputs, sample_size_of
from .split import decode, encode
from .support import check_supported

_HEAD = ["conv_norm_out", "conv_act", "conv_out"]


@dataclass
class Part:
    """One part of the UNet graph."""

    name: str  # "stem", "down_blocks.0", "mid_block", "up_blocks.0", "head"
    kind: str  # "stem" | "encoder" | "bottleneck" | "decoder" | "head"
    resolution: tuple[int, int] | None
    channels: int | None
    skips_produced: list[int] = field(default_factory=list)
    skips_consumed: list[int] = field(default_factory=list)  # one per resnet, in the order the resnets use them
    flops: int = 0
    share: float = 0.0


@dataclass
class Anatomy:
    """The parts of one UNet at one sample size, and the FLOPs of one forward call at batch 1."""

    model_class: str
    sample_size: tuple[int, int]
    parts: list[Part]
    total_flops: int
    skip_shapes: list[tuple[int, ...]]

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"part: {name!r} not in {[p.name for p in self.parts]}")

    def by_kind(self, kind: str) -> list[Part]:
        return [p for p in self.parts if p.kind == kind]

    def share_of(self, kind: str) -> float:
        return sum(p.share for p in self.by_kind(kind))

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A fixed-width text table of the parts."""
        rows = [
            f"{self.model_class} at {self.sample_size[0]}x{self.sample_size[1]}: "
            f"{self.total_flops / 1e9:.3f} GFLOPs per call (batch 1)",
            f"{'part':<16}{'kind':<12}{'res':>9}{'ch':>6}  {'skips':<22}{'GFLOPs':>10}{'share':>8}",
        ]
        for p in self.parts:
            res = f"{p.resolution[0]}x{p.resolution[1]}" if p.resolution else "-"
            skips = (
                ("out " + ",".join(map(str, p.skips_produced)))
                if p.skips_produced
                else (("in " + ",".join(map(str, p.skips_consumed))) if p.skips_consumed else "")
            )
            rows.append(
                f"{p.name:<16}{p.kind:<12}{res:>9}{p.channels or '-':>6}  {skips:<22}"
                f"{p.flops / 1e9:>10.4f}{100 * p.share:>7.1f}%"
            )
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def anatomy(unet, sample_size=None) -> Anatomy:
    """Describe `unet`'s parts and count each part's FLOPs for one forward call at `sample_size` (batch 1)."""
    check_supported(unet)
    size = sample_size_of(unet, sample_size)
    sample, cond = example_inputs(unet, 1, size, generator=torch.Generator().manual_seed(0))
    t = 500
    total, per_module = count_flops(lambda: unet(sample, t, **cond))
    produced_counts: dict[int, int] = {}
    hooks = [
        b.register_forward_hook(lambda m, a, out, i=i: produced_counts.__setitem__(i, len(out[1])))
        for i, b in enumerate(unet.down_blocks)
    ]
    try:
        with torch.no_grad():
            state = encode(unet, sample, t, **cond)
    finally:
        for h in hooks:
            h.remove()

    shapes = [tuple(s.shape[1:]) for s in state.skips]
    parts = [Part("stem", "stem", tuple(shapes[0][1:]), shapes[0][0], skips_produced=[0])]
    index = 1
    for i in range(len(unet.down_blocks)):
        produced = list(range(index, index + produced_counts[i]))
        index += produced_counts[i]
        shape = shapes[produced[-1]]
        parts.append(Part(f"down_blocks.{i}", "encoder", tuple(shape[1:]), shape[0], skips_produced=produced))
    if index != len(shapes):
        raise RuntimeError(f"anatomy: counted {index} skip tensors, the encoder produced {len(shapes)}")
    if unet.mid_block is not None:
        parts.append(Part("mid_block", "bottleneck", tuple(state.mid.shape[2:]), state.mid.shape[1]))
    remaining = list(range(len(shapes)))
    for j, block in enumerate(unet.up_blocks):
        n = len(block.resnets)
        consumed, remaining = remaining[-n:][::-1], remaining[:-n]
        ch = getattr(block.resnets[-1], "out_channels", None)
        parts.append(Part(f"up_blocks.{j}", "decoder", None, ch, skips_consumed=consumed))
    parts.append(Part("head", "head", tuple(sample.shape[2:]), unet.config.out_channels))
    _fill_decoder_resolutions(unet, state, parts)

    non_stem = 0
    for p in parts[1:]:
        p.flops = flops_under(per_module, _HEAD if p.name == "head" else [p.name])
        non_stem += p.flops
    stem_modules = [n for n, _ in unet.named_children() if n not in ("down_blocks", "up_blocks", "mid_block", *_HEAD)]
    parts[0].flops = flops_under(per_module, stem_modules)
    for p in parts:
        p.share = p.flops / total if total else 0.0
    return Anatomy(type(unet).__name__, size, parts, total, shapes)


def _fill_decoder_resolutions(unet, state, parts) -> None:
    """Record each up block's output resolution by hooking a single-timestep decode."""
    outputs = {}
    hooks = [
        b.register_forward_hook(lambda m, a, out, j=j: outputs.__setitem__(j, out))
        for j, b in enumerate(unet.up_blocks)
    ]
    try:
        with torch.no_grad():
            decode(unet, state, [500])
    finally:
        for h in hooks:
            h.remove()
    for j, out in outputs.items():
        out = out[0] if isinstance(out, tuple) else out
        parts_by_name = {p.name: p for p in parts}
        parts_by_name[f"up_blocks.{j}"].resolution = tuple(out.shape[2:])
