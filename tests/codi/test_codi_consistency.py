import math

import pytest
import torch

from unetlab.codi.consistency import (
    alpha_sigma,
    c_out,
    c_skip,
    consistency_function,
    ddim_step,
    implied_noise,
    predicted_x0,
    sampling_timesteps,
    timestep_grid,
)


def test_c_skip_c_out_against_the_formulas_and_the_boundary():
    for t in [0, 1, 3, 50, 900]:
        tt = torch.tensor(float(t), dtype=torch.float64)
        assert float(c_skip(tt)) == pytest.approx(0.25 / ((10 * t) ** 2 + 0.25), rel=1e-15, abs=0)
        assert float(c_out(tt)) == pytest.approx(10 * t / math.sqrt((10 * t) ** 2 + 0.25), rel=1e-15, abs=0)
    assert float(c_skip(torch.tensor(0.0))) == 1.0 and float(c_out(torch.tensor(0.0))) == 0.0
    z = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x_hat = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    assert torch.equal(consistency_function(z, x_hat, torch.zeros(3, dtype=torch.long)), z)  # f(z, 0) = z
    f = consistency_function(z, x_hat, torch.tensor([0, 1, 20]))
    assert torch.allclose(f[1], 0.25 / 100.25 * z[1] + 10 / math.sqrt(100.25) * x_hat[1], rtol=1e-14, atol=0)
    assert torch.allclose(f[2], 0.25 / 40000.25 * z[2] + 200 / math.sqrt(40000.25) * x_hat[2], rtol=1e-14, atol=0)


def test_ode_step_equals_a_hand_written_ddim_step():
    g = torch.Generator().manual_seed(0)
    abar = torch.linspace(0.9999, 0.01, 1000, dtype=torch.float64)
    z_t = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    t, s = torch.tensor([600, 300]), torch.tensor([550, 250])
    alpha_t, sigma_t = alpha_sigma(abar, t, z_t)
    alpha_s, sigma_s = alpha_sigma(abar, s, z_t)
    x_hat = predicted_x0(eps_hat, z_t, alpha_t, sigma_t, "epsilon")
    z_s = ddim_step(x_hat, implied_noise(z_t, x_hat, alpha_t, sigma_t), alpha_s, sigma_s)
    for i in range(2):  # DDIM (Song et al. 2021, Eq. 12), eta = 0, written out per example
        a_t, a_s = float(abar[t[i]]), float(abar[s[i]])
        x0 = (z_t[i] - math.sqrt(1 - a_t) * eps_hat[i]) / math.sqrt(a_t)
        ref = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps_hat[i]
        assert torch.allclose(z_s[i], ref, rtol=0, atol=1e-13)
    v = alpha_t * eps_hat - sigma_t * x_hat
    assert torch.allclose(predicted_x0(v, z_t, alpha_t, sigma_t, "v_prediction"), x_hat, rtol=0, atol=1e-12)


def test_grid_and_sampling_timesteps():
    assert timestep_grid(4, 900).tolist() == [0, 225, 450, 675, 900]
    assert sampling_timesteps(20, 900, 4).tolist() == [900, 675, 450, 225]
    assert sampling_timesteps(20, 900, 1).tolist() == [900]
    with pytest.raises(ValueError, match="num_inference_steps"):
        sampling_timesteps(20, 900, 21)
    with pytest.raises(ValueError, match="grid_size"):
        timestep_grid(0, 900)
