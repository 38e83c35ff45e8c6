"""Clockwork with the identity adaptor (Habibian et al. 2024, Sec. 3), on the partial UNet.

Every `clock` steps the whole UNet runs; in between, the low-resolution path is approximated by the
identity adaptor, i.e. its output from the last full step, and only the `level` highest-resolution levels
(stem, `down_blocks[:level]`, the last `level` up blocks, head) run. The authors' public code caches the
output of the second-to-last up block, so only the last (highest-resolution) level runs: `level=1`.
`reuse="taylor1"`/`"taylor2"` forecasts that output from the last full steps instead (TaylorSeer, `forecast.py`).
`clockwork(clock=c, level=l)` computes exactly what `branch_cache(interval=c, branch=l - 1)` computes;
it keeps the paper's parametrisation and defaults. `adaptor=` replaces the identity adaptor by the paper's learned
one (`clockwork_adaptor.ClockworkAdaptor`, distilled by `unetlab train clockwork`; "digits" and "shapes" are shipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..unet.partial import deep_modules, num_levels
from .clockwork_adaptor import ClockworkAdaptor, adaptor_level, check_spec, load_adaptor
from .config import AccelConfig
from .deep_reuse import DeepReuse
from .forecast import order

PAPER_LEVEL = 1  # clockwork-diffusion's ClockworkWrapper: adaptor in place of up_blocks[-2] and everything below


@dataclass(frozen=True)
class ClockworkConfig(AccelConfig):
    """`clock`: full UNet every `clock` steps; `level`: how many high-resolution levels run (None = the adaptor's
    level, else the paper's 1); `adaptor`: None (the identity adaptor), a shipped adaptor name ("digits", "shapes"),
    a `ClockworkAdaptor` save_pretrained folder or `unetlab train clockwork` run folder, or a loaded
    `ClockworkAdaptor`; `reuse` (identity adaptor only): "copy", "taylor1" or "taylor2" (forecast from the last
    full steps)."""

    kind = "clockwork"
    family = "clockwork"
    clock: int = 2
    level: int | None = None
    reuse: str = "copy"
    adaptor: str | ClockworkAdaptor | None = None

    def __post_init__(self):
        order(self.reuse)
        if isinstance(self.clock, bool) or not isinstance(self.clock, int) or self.clock < 1:
            raise ValueError(f"clock: expected an int >= 1 (1 = every step full), got {self.clock!r}")
        check_spec(self.adaptor)
        if self.adaptor is not None and self.reuse != "copy":
            raise ValueError(
                f"reuse: forecasting replaces the identity adaptor; with adaptor= use reuse='copy', got {self.reuse!r}"
            )
        if self.adaptor is not None and not isinstance(self.adaptor, ClockworkAdaptor):
            object.__setattr__(self, "adaptor", os.fspath(self.adaptor))
        if self.level is None:
            object.__setattr__(self, "level", adaptor_level(self.adaptor) or PAPER_LEVEL)
        elif isinstance(self.level, bool) or not isinstance(self.level, int) or self.level < 1:
            raise ValueError(f"level: expected None (the paper's {PAPER_LEVEL}) or an int >= 1, got {self.level!r}")

    def is_full(self, step: int) -> bool:
        """Whether sampling step `step` (0-based, among the steps run) runs the whole UNet."""
        return step % self.clock == 0

    def label(self) -> str:
        """Row name: "clockwork clock=<clock>", "learned adaptor" with one, the level where it is not the paper's
        (identity adaptor), and the forecast."""
        name = f"clockwork clock={self.clock}"
        if self.adaptor is not None:
            name += " learned adaptor"
        elif self.level != PAPER_LEVEL:
            name += f" level={self.level}"
        return name + (f" {self.reuse}" if self.reuse != "copy" else "")

    def deep(self, unet) -> list:
        """The low-resolution path this config reuses on `unet`; a one-line error when `level` does not fit it."""
        assert self.level is not None  # __post_init__ resolves None to the adaptor's or the paper's level
        n = num_levels(unet)
        if self.level > n - 1:
            raise ValueError(f"level: expected 1 to {n - 1} for this {n}-level UNet, got {self.level}")
        return deep_modules(unet, self.level)

    def to_dict(self) -> dict:
        """As `AccelConfig.to_dict`, with a loaded adaptor written as the name or folder it was loaded from."""
        d = super().to_dict()
        if isinstance(self.adaptor, ClockworkAdaptor):
            if self.adaptor.source is None:
                raise ValueError(
                    "adaptor: an adaptor built in memory has no name to save; save it with "
                    "adaptor.save_pretrained(folder) and pass the folder"
                )
            d["adaptor"] = self.adaptor.source
        return d

    def apply_to(self, target) -> Clockwork:
        return Clockwork(target, self)


class Clockwork(DeepReuse):
    """The handle; `adaptor` is the loaded learned adaptor (None for the identity adaptor)."""

    kind = "clockwork"

    def install(self) -> None:
        if self.config.adaptor is None:
            self.adaptor = None
            return super().install()
        from .adaptor_path import AdaptorPath

        modules = self.config.deep(self.unet)
        self.adaptor = load_adaptor(self.config.adaptor)
        self.deep = self._add(
            AdaptorPath(self.unet, self.config.level, modules, self.adaptor, name=f"unetlab.{self.kind}.deep")
        )

    def forward(self, original, call, args, kwargs):
        if self.adaptor is not None:
            self.deep.text = call.bound.get("encoder_hidden_states")
        return super().forward(original, call, args, kwargs)


def clockwork(target, clock: int = 2, level: int | None = None, reuse: str = "copy", adaptor=None) -> Clockwork:
    """Apply clockwork to a diffusers pipeline or bare UNet (identity adaptor, or the learned `adaptor`); returns
    a handle."""
    return Clockwork(target, ClockworkConfig(clock=clock, level=level, reuse=reuse, adaptor=adaptor))
