"""Exponential moving average of a module's parameters, with a warm-up of the decay."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow parameters theta_ema <- d * theta_ema + (1 - d) * theta, d = min(decay, (1 + n) / (10 + n))."""

    def __init__(self, module: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay: {decay!r} must lie in (0, 1)")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, p in module.named_parameters():
            if p.requires_grad:  # a frozen parameter's average is itself, bit for bit
                self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise ValueError(f"ema state: keys differ from the model's: {sorted(missing)[:5]}")
        self.shadow = {k: v.clone().float() for k, v in state.items()}
        self.num_updates = num_updates
