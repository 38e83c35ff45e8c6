"""The consistency function of CoDi (Mei et al. 2024, Eq. 5; Song et al. 2023, Eq. 7) on a discrete VP schedule,
its grid of timesteps, and the deterministic DDIM step along the probability-flow ODE (Song et al. 2021, Eq. 12)."""

from __future__ import annotations

import torch

SIGMA_DATA = 0.5


def c_skip(t: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_skip(t) = sigma_d^2 / ((10 t)^2 + sigma_d^2), t the discrete training timestep (LCM's timestep scaling 10:
    c_skip = 1 at t = 0 and < 0.0025 from t = 1 on, so f is the model's x_hat everywhere but at the boundary)."""
    return sigma_data**2 / ((10 * t) ** 2 + sigma_data**2)


def c_out(t: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_out(t) = 10 t / sqrt((10 t)^2 + sigma_d^2)."""
    return 10 * t / ((10 * t) ** 2 + sigma_data**2).sqrt()


def alpha_sigma(alphas_cumprod: torch.Tensor, timestep: torch.Tensor, like: torch.Tensor):
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) per example, shaped to broadcast against `like`."""
    abar = alphas_cumprod.to(like.device).double()[timestep.to(like.device)].view(-1, *([1] * (like.ndim - 1)))
    return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)


def predicted_x0(
    output: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """x_hat from the network output: (z - sigma eps_hat) / alpha (epsilon) or alpha z - sigma v_hat (v)."""
    if prediction_type == "epsilon":
        return (z - sigma * output) / alpha
    if prediction_type == "v_prediction":
        return alpha * z - sigma * output
    raise ValueError(f"prediction_type: {prediction_type!r} is not 'epsilon' or 'v_prediction'")


def consistency_function(z: torch.Tensor, x_hat: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """f(z, t) = c_skip(t) z + c_out(t) x_hat at training timesteps t; f(z, 0) = z (the boundary condition)."""
    t = timestep.double().to(z.device).view(-1, *([1] * (z.ndim - 1)))
    return c_skip(t).to(z.dtype) * z + c_out(t).to(z.dtype) * x_hat


def implied_noise(z: torch.Tensor, x_hat: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eps_hat = (z - alpha x_hat) / sigma, the noise a denoised estimate implies."""
    return (z - alpha * x_hat) / sigma


def ddim_step(x_hat: torch.Tensor, eps_hat: torch.Tensor, alpha_s: torch.Tensor, sigma_s: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step to time s: z_s = alpha_s x_hat + sigma_s eps_hat (DDIM, eta = 0)."""
    return alpha_s * x_hat + sigma_s * eps_hat


def timestep_grid(grid_size: int, t_max: int) -> torch.Tensor:
    """tau_0 = 0 < tau_1 < ... < tau_N = t_max: N + 1 evenly spaced training timesteps."""
    if not isinstance(t_max, int) or t_max < 1:
        raise ValueError(f"t_max: {t_max!r} must be a positive int (a training timestep index)")
    if not isinstance(grid_size, int) or not 1 <= grid_size <= t_max:
        raise ValueError(f"grid_size: {grid_size!r} must be an int in [1, {t_max}]")
    return torch.linspace(0, t_max, grid_size + 1, dtype=torch.float64).round().long()


def sampling_timesteps(grid_size: int, t_max: int, num_inference_steps: int) -> torch.Tensor:
    """The K timesteps of K-step sampling: grid points tau_N, tau_{N - N/K}, ... (every N/K-th, from the top)."""
    if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= grid_size:
        raise ValueError(f"num_inference_steps: {num_inference_steps!r} must be an int in [1, {grid_size}]")
    grid = timestep_grid(grid_size, t_max)
    index = torch.linspace(grid_size, 0, num_inference_steps + 1, dtype=torch.float64)[:-1].round().long()
    return grid[index]
