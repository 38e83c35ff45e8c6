"""Observe or replace every anatomy part's output, and every skip tensor, at each sampling step.

Part names follow `unetlab.unet.anatomy`: stem (conv_in), down_blocks.i, mid_block, up_blocks.j, head (the
model output). Skip tensor k (`skip.k`) is seen on the consumer side, as the up block receives it, so that
replacing it eliminates the skip connection only (the encoder's main path is untouched). These are forward
hooks: the modules still run, which is what measurement wants (`unetlab.block_skip` saves the compute).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..accel.handle import Handle
from ..patching import StepClock

PartFn = Callable[[str, int, object], object]
SkipFn = Callable[[int, int, torch.Tensor], torch.Tensor]


def part_modules(unet) -> dict[str, torch.nn.Module]:
    """Anatomy part name -> module whose output is that part's output (head: the UNet itself)."""
    parts = {"stem": unet.conv_in}
    parts.update({f"down_blocks.{i}": b for i, b in enumerate(unet.down_blocks)})
    if unet.mid_block is not None:
        parts["mid_block"] = unet.mid_block
    parts.update({f"up_blocks.{j}": b for j, b in enumerate(unet.up_blocks)})
    parts["head"] = unet
    return parts


def skip_wiring(unet) -> list[list[int]]:
    """For each up block, the skip indices of its `res_hidden_states_tuple`, position by position."""
    total = sum(len(b.resnets) for b in unet.up_blocks)
    remaining, wiring = list(range(total)), []
    for block in unet.up_blocks:
        n = len(block.resnets)
        wiring.append(remaining[-n:])
        remaining = remaining[:-n]
    return wiring


def main_tensor(out) -> torch.Tensor:
    """The main-path tensor of a module output (down blocks return (hidden, skips), Skip blocks add more)."""
    if torch.is_tensor(out):
        return out
    if hasattr(out, "sample"):
        return out.sample
    return out[0]


def with_main(out, new: torch.Tensor):
    """`out` with its main-path tensor replaced by `new`."""
    if torch.is_tensor(out):
        return new
    return (new, *out[1:])


class Taps(Handle):
    """Hooks calling `on_part(name, step, output)` and `on_skip(k, step, tensor)`; a non-None return replaces.
    A `Handle` of kind "taps" (one at a time per UNet; removal restores the UNet and scheduler exactly)."""

    kind = "taps"

    def __init__(
        self,
        unet,
        scheduler,
        on_part: PartFn | None = None,
        on_skip: SkipFn | None = None,
        on_start: Callable[[], None] | None = None,
    ):
        super().__init__(unet)
        self.clock = self._add(StepClock(scheduler, on_start=on_start))
        if on_part is not None:
            for name, module in part_modules(unet).items():
                self._add(
                    module.register_forward_hook(lambda m, a, out, name=name: on_part(name, self.clock.step_index, out))
                )
        if on_skip is not None:
            for block, indices in zip(unet.up_blocks, skip_wiring(unet)):
                self._add(
                    block.register_forward_pre_hook(
                        lambda m, args, kwargs, indices=indices: self._skips(on_skip, indices, args, kwargs),
                        with_kwargs=True,
                    )
                )

    def _skips(self, on_skip: SkipFn, indices, args, kwargs):
        positional = "res_hidden_states_tuple" not in kwargs
        res = args[1] if positional else kwargs["res_hidden_states_tuple"]
        step = self.clock.step_index
        new = tuple(r if (o := on_skip(k, step, r)) is None else o for k, r in zip(indices, res))
        if positional:
            return (args[0], new, *args[2:]), kwargs
        return args, {**kwargs, "res_hidden_states_tuple": new}
