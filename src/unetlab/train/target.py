"""The regression target of a denoiser's output: the noise (Ho et al. 2020, Eq. 14) or the velocity
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, Sec. 4), as the scheduler's `prediction_type` says."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction")


def training_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """unetlab's training noise schedule (1,000 steps, cosine) for `prediction_type` "epsilon" or "v_prediction"."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type: {prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)


def target(scheduler: DDPMScheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses at (x0, eps, t): eps, or v via diffusers' `get_velocity` (Salimans & Ho 2022, Sec. 4)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, eps, t.to(x0.device))
    raise ValueError(f"prediction_type: {kind!r} is not one of {', '.join(PREDICTION_TYPES)}")
