"""Branch caching (DeepCache, Ma et al. 2023, Sec. 3.2-3.3) on the partial UNet.

Every `interval` steps (or at an explicit list of full steps) the whole UNet runs and the feature
entering the shallow part is cached; at the other steps only the stem, the shallow down path, the
shallow up path and the head run, on the cached feature. `granularity="block"`: the shallow part is the
`branch + 1` highest-resolution levels (`down_blocks[:branch + 1]`, the last `branch + 1` up blocks).
`granularity="layer"`: DeepCache's own branches — only the last `branch + 1` up layers (resnet plus
attention) and the down layers producing their skips run (branch 0: conv_in and the very last layer).
`reuse`: at a cheap step the deep path's outputs are copied ("copy") or forecast from the last full steps
("taylor1", "taylor2": TaylorSeer, `forecast.py`).
Steps count the steps the pipeline call runs (`handle.Accelerator`), so img2img's first step run is full.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..unet.partial import deep_layer_modules, deep_modules, num_levels, num_up_layers
from ..unet.support import UnsupportedUNetError
from .config import AccelConfig
from .deep_reuse import DeepReuse
from .forecast import order


@dataclass(frozen=True)
class BranchCacheConfig(AccelConfig):
    """`interval`: full step every `interval` steps (uniform schedule); `branch`: 0 = shallowest level (or layer)
    only; `schedule`: "uniform" or the explicit 0-based indices of the full steps (then `interval` is unused);
    `granularity`: "block" (branches are levels) or "layer" (branches are up layers, as in DeepCache); `reuse`:
    "copy", "taylor1" or "taylor2" (the deep path's outputs forecast from the last full steps)."""

    kind = "branch_cache"
    family = "branch-cache"
    interval: int = 3
    branch: int = 0
    schedule: str | tuple[int, ...] = "uniform"
    granularity: str = "block"
    reuse: str = "copy"

    def __post_init__(self):
        order(self.reuse)
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"interval: expected an int >= 1 (1 = every step full), got {self.interval!r}")
        if isinstance(self.branch, bool) or not isinstance(self.branch, int) or self.branch < 0:
            raise ValueError(f"branch: expected an int >= 0 (0 = only the shallowest level runs), got {self.branch!r}")
        if self.granularity not in ("block", "layer"):
            raise ValueError(f"granularity: expected 'block' or 'layer', got {self.granularity!r}")
        if isinstance(self.schedule, str):
            if self.schedule != "uniform":
                raise ValueError(f"schedule: expected 'uniform' or a list of full-step indices, got {self.schedule!r}")
            return
        steps = tuple(self.schedule) if isinstance(self.schedule, (list, tuple)) else None
        if (
            not steps
            or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
            or steps[0] != 0
            or any(b <= a for a, b in zip(steps, steps[1:]))
        ):
            raise ValueError(
                "schedule: expected 'uniform' or a strictly increasing list of int step indices "
                f"starting with 0, got {self.schedule!r}"
            )
        object.__setattr__(self, "schedule", steps)

    def is_full(self, step: int) -> bool:
        """Whether sampling step `step` (0-based, among the steps run) runs the whole UNet."""
        if self.schedule == "uniform":
            return step % self.interval == 0
        return step in self.schedule

    def check_steps(self, num_steps: int) -> None:
        """Raise when an explicit schedule names a step the pipeline call does not run."""
        if isinstance(self.schedule, tuple) and self.schedule[-1] >= num_steps:
            raise ValueError(
                f"schedule: full step {self.schedule[-1]} is out of range for a call with "
                f"{num_steps} steps (valid: 0 to {num_steps - 1})"
            )

    def label(self) -> str:
        """Row name: "branch cache N=<interval>" (or "at steps ..."), "B=<branch>" or "layer" (with "B=<branch>"
        past 0) and the forecast."""
        when = f"N={self.interval}" if self.schedule == "uniform" else f"at steps {','.join(map(str, self.schedule))}"
        where = (
            f"B={self.branch}"
            if self.granularity == "block"
            else "layer" + (f" B={self.branch}" if self.branch else "")
        )
        return f"branch cache {when} {where}" + (f" {self.reuse}" if self.reuse != "copy" else "")

    def deep(self, unet) -> list:
        """The deep path this config reuses on `unet`; a one-line error when `branch` does not fit it."""
        if self.granularity == "layer":
            check_layered(unet)
            n = num_up_layers(unet)
            if self.branch > n - 2:
                raise ValueError(f"branch: expected 0 to {n - 2} for this UNet's {n} up layers, got {self.branch}")
            return deep_layer_modules(unet, self.branch + 1)
        n = num_levels(unet)
        if self.branch > n - 2:
            raise ValueError(f"branch: expected 0 to {n - 2} for this {n}-level UNet, got {self.branch}")
        return deep_modules(unet, self.branch + 1)

    def apply_to(self, target) -> BranchCache:
        return BranchCache(target, self)


def check_layered(unet) -> None:
    """Raise unless `unet`'s blocks are made of layers (resnets, and downsamplers in the down blocks)."""
    num_levels(unet)
    parts = [(b, ("resnets", "downsamplers")) for b in unet.down_blocks] + [(b, ("resnets",)) for b in unet.up_blocks]
    for block, names in parts:
        if not all(hasattr(block, name) for name in names):
            raise UnsupportedUNetError(
                f"granularity: 'layer' needs blocks of resnets and downsamplers (UNet2DModel, UNet2DConditionModel); "
                f"{type(unet).__name__}'s {type(block).__name__} has none: use granularity='block'"
            )


class BranchCache(DeepReuse):
    kind = "branch_cache"


def branch_cache(
    target, interval: int = 3, branch: int = 0, schedule="uniform", granularity: str = "block", reuse: str = "copy"
) -> BranchCache:
    """Apply branch caching to a diffusers pipeline or bare UNet; returns a handle (context manager, `.remove()`)."""
    return BranchCache(
        target,
        BranchCacheConfig(interval=interval, branch=branch, schedule=schedule, granularity=granularity, reuse=reuse),
    )
