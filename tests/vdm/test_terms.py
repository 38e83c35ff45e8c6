"""Reconstruction term, data quantisation, loss forms and the sampler step against independent formulas."""

import math

import pytest
import torch

from unetlab.vdm import (
    VDM,
    FixedLinearSchedule,
    NoDownsampleUNet,
    alpha2_sigma2,
    ancestral_sample,
    ancestral_step,
    antithetic_t,
    bins_to_x,
    evaluate_bpd,
    reconstruction_nll,
    x_to_bins,
)
from unetlab.vdm.terms import diffusion_loss_eps

DELTA = 2.0 / 256  # bin width in data units


def tiny_net(**kw) -> NoDownsampleUNet:
    torch.manual_seed(0)
    net = NoDownsampleUNet(channels=8, n_blocks=1, norm_groups=4, **kw)
    torch.nn.init.normal_(net.conv_out.weight, std=0.2)
    return net


def test_data_quantisation_round_trip():
    k = torch.arange(256)
    x = bins_to_x(k)
    assert float(x[0]) == pytest.approx(-1 + 1 / 256) and float(x[-1]) == pytest.approx(1 - 1 / 256)
    assert torch.equal(x_to_bins(x), k)


@pytest.mark.parametrize("gamma_0", [-13.3, -6.0])
def test_reconstruction_nll_clean_interior_pixel(gamma_0):
    # z₀ = α₀ x_k exactly: −log p = log Σ_m exp(−½ (m δ / s)²), s = σ₀/α₀ = exp(γ₀/2)
    g0 = torch.tensor([gamma_0], dtype=torch.float64)
    x = bins_to_x(torch.full((1, 1, 1, 1), 128)).double()
    nll = float(reconstruction_nll(x, torch.sigmoid(-g0).sqrt() * x, g0))
    s = math.exp(gamma_0 / 2)
    if gamma_0 == -13.3:  # only the two neighbours matter: log(1 + 2 e^{−δ²/2s²}) = 2.432e−8 nats
        assert nll == pytest.approx(math.log1p(2 * math.exp(-0.5 * (DELTA / s) ** 2)), rel=1e-6)
        assert f"{nll:.3e}" == "2.432e-08"
    else:  # many bins: Poisson summation gives log(√(2π) s/δ) up to exp(−2π² s²/δ²)
        assert nll == pytest.approx(math.log(math.sqrt(2 * math.pi) * s / DELTA), rel=1e-9)


def test_antithetic_times_are_evenly_spaced():
    t = antithetic_t(8, torch.Generator().manual_seed(3), dtype=torch.float64)
    gaps = torch.diff(torch.sort(t).values)
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / 8)) and bool(((t >= 0) & (t < 1)).all())


def test_vdm_v_loss_equals_eps_form():
    net = tiny_net().double()
    model = VDM(net, FixedLinearSchedule(), parameterization="v")
    g = torch.Generator().manual_seed(1)
    x = bins_to_x(torch.randint(0, 256, (4, 1, 8, 8), generator=g)).double()
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    v_form = model.diffusion(x, t, eps)
    gamma = model.schedule(t)
    alpha2, sigma2 = (a.view(-1, 1, 1, 1) for a in alpha2_sigma2(gamma))
    z = alpha2.sqrt() * x + sigma2.sqrt() * eps
    eps_hat = alpha2.sqrt() * net(z, gamma) + sigma2.sqrt() * z  # ε = α v + σ z
    eps_form = diffusion_loss_eps(torch.full_like(t, 18.3), eps, eps_hat)
    assert torch.allclose(v_form, eps_form, rtol=1e-10, atol=0)


def test_ancestral_step_matches_vdm_eps_update():
    # VDM code: z_s = √(α_s²/α_t²) (z_t − σ_t c ε̂) + √(σ_s² c) ε with c = −expm1(γ_s − γ_t)
    g = torch.Generator().manual_seed(2)
    z_t, eps_hat = torch.randn(2, 3, generator=g, dtype=torch.float64)
    gamma_s, gamma_t = torch.tensor(-2.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64)
    (a_s, s_s), (a_t, s_t) = alpha2_sigma2(gamma_s), alpha2_sigma2(gamma_t)
    c = -torch.expm1(gamma_s - gamma_t)
    x_hat = (z_t - s_t.sqrt() * eps_hat) / a_t.sqrt()
    mu, std = ancestral_step(z_t, x_hat, gamma_s, gamma_t, counter_term=False)
    assert torch.allclose(mu, (a_s / a_t).sqrt() * (z_t - s_t.sqrt() * c * eps_hat), rtol=1e-12)
    assert torch.allclose(std, (s_s * c).sqrt(), rtol=1e-12)


def test_sampler_is_reproducible_and_lands_on_bins():
    model = VDM(tiny_net(), FixedLinearSchedule())
    a = ancestral_sample(model, (2, 1, 8, 8), 5, torch.Generator().manual_seed(0))
    b = ancestral_sample(model, (2, 1, 8, 8), 5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(bins_to_x(x_to_bins(a)), a)


def test_bpd_is_sum_of_terms_and_prior_matches_constant():
    model = VDM(tiny_net(), FixedLinearSchedule())
    x = torch.ones(3, 1, 4, 4)  # prior per dim at x = 1 is 3.358e−3 nats
    out = evaluate_bpd(model, x, torch.Generator().manual_seed(0), batch_size=2)
    assert out["total"] == pytest.approx(out["reconstruction"] + out["prior"] + out["diffusion"], rel=1e-9)
    assert out["prior"] == pytest.approx(3.3577e-3 / math.log(2), rel=1e-4)
    with pytest.raises(ValueError, match="data must be"):
        evaluate_bpd(model, x[0], torch.Generator())
