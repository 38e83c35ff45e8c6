"""The partial UNet: run only the shallow (high-resolution) levels and reuse the deep path's last outputs.

A UNet with n levels pairs `down_blocks[i]` with `up_blocks[n-1-i]`. With `levels` = L shallow levels,
the *deep path* is `down_blocks[L:]`, `mid_block` and `up_blocks[:n-L]`; its result is the output of
`up_blocks[n-L-1]`, the feature entering the last L up blocks (DeepCache, Ma et al. 2023, Sec. 3.2;
Clockwork, Habibian et al. 2024, Sec. 3 with the identity adaptor). The shallow up blocks consume only
the skips of `conv_in` and `down_blocks[:L]`, so with the deep path's outputs from a full pass at the
same input the model's own `forward` yields the same tensor as the full pass. At layer granularity
(DeepCache's branches) the cut falls inside a level: only the last `up_layers` up layers (resnet plus
attention) run, on skips s_0 .. s_{up_layers-1}, and the rest of both boundary blocks is deep.

This module only names the modules; the reuse accelerators make them reusable. Everything
else — stem, shallow blocks, head, conditioning — is the model's own `forward`, so nothing of diffusers'
forward is copied and any UNet with paired down and up blocks works (2D, 3D/video, motion).
"""

from __future__ import annotations

import torch


def num_levels(unet) -> int:
    """Number of resolution levels (down blocks, each paired with one up block)."""
    if not (hasattr(unet, "down_blocks") and hasattr(unet, "up_blocks")):
        raise ValueError(f"unet: {type(unet).__name__} has no down_blocks/up_blocks; levels cannot be paired")
    n = len(unet.down_blocks)
    if len(unet.up_blocks) != n:
        raise ValueError(f"unet: {n} down blocks but {len(unet.up_blocks)} up blocks; levels cannot be paired")
    return n


def check_levels(unet, levels: int, name: str = "levels") -> None:
    """Raise a one-line error unless 1 <= levels <= num_levels - 1 (at least one deep level is reused)."""
    n = num_levels(unet)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= n - 1:
        raise ValueError(f"{name}: expected an int from 1 to {n - 1} for this {n}-level UNet, got {levels!r}")


def deep_modules(unet, levels: int) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of the deep path below `levels` shallow levels, in execution order."""
    check_levels(unet, levels)
    n = len(unet.down_blocks)
    mods = [(f"down_blocks.{i}", unet.down_blocks[i]) for i in range(levels, n)]
    if unet.mid_block is not None:
        mods.append(("mid_block", unet.mid_block))
    mods += [(f"up_blocks.{j}", unet.up_blocks[j]) for j in range(n - levels)]
    return mods


def num_up_layers(unet) -> int:
    """Number of up-block layers (resnets), one per skip tensor; DeepCache's branches are counted in these."""
    num_levels(unet)
    return sum(len(b.resnets) for b in unet.up_blocks)


def _layers(block) -> list[tuple[str, torch.nn.Module]]:
    """A block's layers in execution order: resnets[k] then attentions[k] when the block has attentions."""
    if hasattr(block, "skip_conv") or hasattr(block, "skip_norm"):
        raise ValueError(
            f"up_layers: {type(block).__name__} carries a skip image between layers; "
            "use whole levels (granularity='block') for this UNet"
        )
    temporal = [a for a in ("motion_modules", "temp_convs", "temp_attentions") if getattr(block, a, None)]
    if temporal:
        raise ValueError(
            f"up_layers: {type(block).__name__} interleaves {temporal[0]} with its layers; "
            "use whole levels (granularity='block') for this UNet"
        )
    attn = getattr(block, "attentions", None) or []
    if attn and len(attn) != len(block.resnets):
        raise ValueError(
            f"up_layers: {type(block).__name__} has {len(block.resnets)} resnets but {len(attn)} "
            "attentions; use whole levels (granularity='block') for this UNet"
        )
    out = []
    for k, r in enumerate(block.resnets):
        out.append((f"resnets.{k}", r))
        if attn:
            out.append((f"attentions.{k}", attn[k]))
    return out


def deep_layer_modules(unet, up_layers: int) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of the deep path when only the last `up_layers` up layers run (DeepCache's branch
    `up_layers - 1`): they consume skips s_0 (conv_in) .. s_{up_layers-1}; every module producing a later
    skip, the mid block and every earlier up layer is deep. In execution order."""
    total = num_up_layers(unet)
    if isinstance(up_layers, bool) or not isinstance(up_layers, int) or not 1 <= up_layers <= total - 1:
        raise ValueError(f"up_layers: expected an int from 1 to {total - 1} for this UNet, got {up_layers!r}")
    mods, first = [], 1  # index of the first skip each down block produces (s_0 is conv_in)
    for i, block in enumerate(unet.down_blocks):
        n_skips = len(block.resnets) + len(block.downsamplers or [])
        keep = up_layers - first  # how many of this block's skips the shallow up layers consume
        if keep <= 0:
            mods.append((f"down_blocks.{i}", block))
        elif keep < n_skips:
            layers = [(n, m) for n, m in _layers(block) if int(n.split(".")[1]) >= keep]
            layers += [(f"downsamplers.{k}", m) for k, m in enumerate(block.downsamplers or [])]
            mods += [(f"down_blocks.{i}.{n}", m) for n, m in layers]
        first += n_skips
    if unet.mid_block is not None:
        mods.append(("mid_block", unet.mid_block))
    remaining = total - up_layers  # deep up layers, counted from the first up block
    for j, block in enumerate(unet.up_blocks):
        if remaining >= len(block.resnets):
            mods.append((f"up_blocks.{j}", block))
        elif remaining > 0:
            mods += [(f"up_blocks.{j}.{n}", m) for n, m in _layers(block) if int(n.split(".")[1]) < remaining]
        remaining -= len(block.resnets)
    return mods
