import pytest
import torch

from unetlab.codi.consistency import alpha_sigma, c_out, c_skip, consistency_function
from unetlab.codi.loss import CoDiLossConfig, codi_loss

ABAR = torch.cat([torch.ones(1, dtype=torch.float64), torch.linspace(0.999, 0.02, 999, dtype=torch.float64)])


def oracle(x0):
    """An epsilon-model whose consistency function is x0 at every (z, t > 0): f = c_skip z + c_out x_hat = x0."""

    def model(z, t, condition):
        alpha, sigma = alpha_sigma(ABAR, t, z)
        tc = t.double().view(-1, 1, 1, 1)
        x_hat = (x0 - c_skip(tc) * z) / c_out(tc).clamp_min(1e-300)
        return torch.where(t.view(-1, 1, 1, 1) > 0, (z - alpha * x_hat) / sigma.clamp_min(1e-300), 0.0)

    return model


def point_mass_teacher(x0):
    """The exact epsilon of the data distribution delta(x0): eps*(z, t) = (z - alpha_t x0) / sigma_t."""

    def model(z, t, condition):
        alpha, sigma = alpha_sigma(ABAR, t, z)
        return (z - alpha * x0) / sigma

    return model


@pytest.mark.parametrize("ode_solver", ["adapted", "teacher"])
@pytest.mark.parametrize("sampling", ["per_example", "per_batch"])
def test_loss_is_zero_when_online_and_target_agree_and_positive_otherwise(ode_solver, sampling):
    x0 = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    cond = torch.zeros(6, 1, 2, 2, dtype=torch.float64)
    cfg = CoDiLossConfig(grid_size=8, t_max=999, ode_solver=ode_solver, timestep_sampling=sampling)
    model, teacher = oracle(x0), point_mass_teacher(x0)
    terms = codi_loss(model, model, teacher, x0, cond, torch.Generator().manual_seed(1), ABAR, cfg)
    assert set(terms) == {"consistency", "reconstruction", "noise", "total"}
    for name, value in terms.items():
        assert float(value) < 1e-20, name

    def off(z, t, c):
        return model(z, t, c) + 0.05

    wrong = codi_loss(off, model, teacher, x0, cond, torch.Generator().manual_seed(1), ABAR, cfg)
    assert float(wrong["consistency"]) > 1e-6 and float(wrong["reconstruction"]) > 1e-6
    stale_target = codi_loss(model, off, teacher, x0, cond, torch.Generator().manual_seed(1), ABAR, cfg)
    assert float(stale_target["consistency"]) > 1e-6 and float(stale_target["reconstruction"]) < 1e-20


def test_noise_term_switch_and_per_batch_draws_one_t():
    x0 = torch.rand(4, 1, 4, 4, dtype=torch.float64) * 2 - 1
    calls = []

    def model(z, t, c):
        calls.append(t.clone())
        return torch.zeros_like(z)

    cond = torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    cfg = CoDiLossConfig(grid_size=8, noise_consistency=False, timestep_sampling="per_batch")
    terms = codi_loss(model, model, None, x0, cond, torch.Generator().manual_seed(3), ABAR, cfg)
    assert "noise" not in terms
    assert len(set(calls[0].tolist())) == 1 and (calls[0] > calls[1]).all()
    with pytest.raises(ValueError, match="ode_solver"):
        CoDiLossConfig(ode_solver="euler")


@pytest.mark.parametrize("sampling", ["per_example", "per_batch"])
def test_draws_are_rows_of_the_global_batch(sampling):
    from unetlab.train.draws import Draws, StepDraws

    x0 = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    cond = torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    cfg = CoDiLossConfig(grid_size=8, timestep_sampling=sampling)

    def seen(start, stop):
        calls = []

        def model(z, t, c):
            calls.append((z.clone(), t.clone()))
            return torch.zeros_like(z)

        codi_loss(
            model,
            model,
            None,
            x0[start:stop],
            cond[start:stop],
            Draws({"draws": StepDraws(77, start, stop, 4)}, None),
            ABAR,
            cfg,
        )
        return calls[0]  # the online call: z_t and t

    (z, t), (z0, t0), (z1, t1) = seen(0, 4), seen(0, 2), seen(2, 4)
    assert torch.equal(torch.cat([t0, t1]), t) and torch.equal(torch.cat([z0, z1]), z)
    assert (len(set(t.tolist())) == 1) == (sampling == "per_batch")


def test_adapted_ode_step_keeps_the_noise_that_made_z_t():
    """CoDi's z_hat_s = alpha_s f_t + sigma_s eps with the eps of z_t = alpha_t x0 + sigma_t eps, not the eps that f_t
    implies (a DDIM step): noise f_t leaves in would otherwise become signal that the target keeps."""
    x0 = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    cond = torch.zeros(6, 1, 2, 2, dtype=torch.float64)
    seen = []

    def model(z, t, c):  # eps_hat = 0: x_hat = z / alpha_t, far from x0
        seen.append((z.clone(), t.clone()))
        return torch.zeros_like(z)

    cfg = CoDiLossConfig(grid_size=8, t_max=999)
    codi_loss(model, model, None, x0, cond, torch.Generator().manual_seed(2), ABAR, cfg)
    (z_t, t), (z_hat_s, s) = seen
    alpha_t, sigma_t = alpha_sigma(ABAR, t, z_t)
    alpha_s, sigma_s = alpha_sigma(ABAR, s, z_t)
    f_t = consistency_function(z_t, z_t / alpha_t, t)
    eps = (z_t - alpha_t * x0) / sigma_t
    torch.testing.assert_close(z_hat_s, alpha_s * f_t + sigma_s * eps)
    implied = alpha_s * f_t + sigma_s * (z_t - alpha_t * f_t) / sigma_t
    assert (s > 0).any() and not torch.allclose(z_hat_s[s > 0], implied[s > 0])
