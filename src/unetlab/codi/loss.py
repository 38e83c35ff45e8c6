"""The conditional consistency loss of CoDi (Mei et al. 2024, Eq. 6-9): one ODE step from z_t to z_hat_s, an EMA
target at (z_hat_s, s), the boundary-parameterised f, and the x_0 (conditional guidance) and noise terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..train.draws import Draws
from .consistency import (
    alpha_sigma,
    consistency_function,
    ddim_step,
    implied_noise,
    predicted_x0,
    timestep_grid,
)

ODE_SOLVERS = ("adapted", "teacher")
T_MAX = 900
TIMESTEP_SAMPLING = ("per_example", "per_batch")

# (z, timestep (B,), condition) -> network output, in the teacher's parameterisation
Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CoDiLossConfig:
    """`grid_size` N of the timestep grid tau_0 = 0 < ... < tau_N = `t_max` (training timestep indices; the top stops
    short of T - 1 = 999 because x_hat = (z - sigma eps_hat) / alpha multiplies eps errors by sigma/alpha, 2e4 at
    999 and 6.4 at 900 for the cosine schedule); `ode_solver`: z_hat_s from z_t by the adapted (online,
    stop-gradient) model, alpha_s f_t + sigma_s eps with the eps of z_t (Mei et al. 2024), or by the frozen
    unconditional teacher's DDIM step; `noise_consistency`: add
    ||eps_hat(z_t, f_t) - sg(eps_hat(z_hat_s, f_s^-))||^2; one t per example or one per batch."""

    grid_size: int = 20
    t_max: int = T_MAX
    ode_solver: str = "adapted"
    noise_consistency: bool = True
    timestep_sampling: str = "per_example"

    def __post_init__(self):
        if not isinstance(self.grid_size, int) or self.grid_size < 1:
            raise ValueError(f"grid_size: {self.grid_size!r} must be a positive int")
        if self.ode_solver not in ODE_SOLVERS:
            raise ValueError(f"ode_solver: {self.ode_solver!r} is not one of {', '.join(ODE_SOLVERS)}")
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(
                f"timestep_sampling: {self.timestep_sampling!r} is not one of {', '.join(TIMESTEP_SAMPLING)}"
            )


def as_draws(draws: Draws | torch.Generator) -> Draws:
    """`draws` itself, or draws from a plain generator (a loss called outside the training loop)."""
    return draws if isinstance(draws, Draws) else Draws({}, draws)


def sample_grid_index(batch: int, cfg: CoDiLossConfig, draws: Draws) -> torch.Tensor:
    """n in {1, ..., N}: one per example, or one for the whole (global) batch, repeated."""
    if cfg.timestep_sampling == "per_example":
        return draws.randint(cfg.grid_size, batch) + 1
    # the step's generator is the same in every process, so one draw from it is one t for the global batch
    n = torch.randint(1, cfg.grid_size + 1, (1,), generator=draws.generator)
    return n.expand(batch).clone()


def codi_loss(
    online: Model,
    target: Model,
    teacher: Model | None,
    x0: torch.Tensor,
    condition: torch.Tensor,
    draws: Draws | torch.Generator,
    alphas_cumprod: torch.Tensor,
    cfg: CoDiLossConfig,
    prediction_type: str = "epsilon",
) -> dict[str, torch.Tensor]:
    """The loss terms: consistency ||f_t - sg(f_s^-)||^2, reconstruction ||f_t - x_0||^2 and (if enabled) noise
    consistency, each a mean over elements; "total" is their sum. Random draws (n, eps) come from `draws` (the
    training loop's step draws, the same however many processes share the batch, or a generator)."""
    draws = as_draws(draws)
    b = x0.shape[0]
    grid = timestep_grid(cfg.grid_size, cfg.t_max)
    n = sample_grid_index(b, cfg, draws)
    t, s = grid[n].to(x0.device), grid[n - 1].to(x0.device)
    eps = draws.randn(tuple(x0.shape)).to(x0)
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x0)
    alpha_s, sigma_s = alpha_sigma(alphas_cumprod, s, x0)
    z_t = alpha_t * x0 + sigma_t * eps

    x_hat_t = predicted_x0(online(z_t, t, condition), z_t, alpha_t, sigma_t, prediction_type)
    f_t = consistency_function(z_t, x_hat_t, t)
    with torch.no_grad():
        if cfg.ode_solver == "adapted":
            # CoDi's latent prediction: the adapted model's x_hat with the eps that made z_t (not the eps x_hat
            # implies, which would turn noise that f_t leaves in into signal the target keeps)
            z_hat_s = ddim_step(f_t.detach(), eps, alpha_s, sigma_s)
        else:
            x_hat = predicted_x0(teacher(z_t, t, condition), z_t, alpha_t, sigma_t, prediction_type)
            z_hat_s = ddim_step(x_hat, implied_noise(z_t, x_hat, alpha_t, sigma_t), alpha_s, sigma_s)
        x_hat_s = predicted_x0(target(z_hat_s, s, condition), z_hat_s, alpha_s, sigma_s, prediction_type)
        f_s = consistency_function(z_hat_s, x_hat_s, s)

    terms = {"consistency": F.mse_loss(f_t, f_s), "reconstruction": F.mse_loss(f_t, x0)}
    if cfg.noise_consistency:
        # at s = 0, f_s^- = z_hat_s by the boundary condition and implies no noise; the term is a sum over the kept
        # examples divided by all of them, so its mean over processes equals the global batch's value
        keep = s > 0
        eps_t = implied_noise(z_t[keep], f_t[keep], alpha_t[keep], sigma_t[keep])
        eps_s = implied_noise(z_hat_s[keep], f_s[keep], alpha_s[keep], sigma_s[keep])
        terms["noise"] = F.mse_loss(eps_t, eps_s) * keep.float().mean() if keep.any() else f_t.sum() * 0
    terms["total"] = sum(terms.values())
    return terms


def diffusion_loss(
    model: Model,
    x0: torch.Tensor,
    condition: torch.Tensor,
    draws: Draws | torch.Generator,
    alphas_cumprod: torch.Tensor,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """The plain conditional diffusion loss of the ControlNet baseline: ||target - model(z_t, t, c)||^2
    (Ho et al. 2020, Eq. 14), t uniform over the training timesteps; draws as in `codi_loss`."""
    draws = as_draws(draws)
    b = x0.shape[0]
    t = draws.randint(len(alphas_cumprod), b).to(x0.device)
    eps = draws.randn(tuple(x0.shape)).to(x0)
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x0)
    z_t = alpha_t * x0 + sigma_t * eps
    target = eps if prediction_type == "epsilon" else alpha_t * eps - sigma_t * x0
    return F.mse_loss(model(z_t, t, condition), target)
