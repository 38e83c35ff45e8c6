"""VDM's published constants for the default fixed linear schedule γ ∈ [−13.3, 5] (REFERENCE.md §5)."""

import math

import pytest
import torch

from unetlab.vdm import FixedLinearSchedule, alpha2_sigma2, gamma_and_derivative, prior_kl


def sig4(value: float) -> str:
    return f"{value:.3e}"


def test_endpoint_variances_and_slope():
    schedule = FixedLinearSchedule()
    gamma = schedule(torch.tensor([0.0, 1.0], dtype=torch.float64))
    alpha2, sigma2 = alpha2_sigma2(gamma)
    assert sig4(float(sigma2[0])) == "1.674e-06"  # σ₀²
    assert sig4(float(alpha2[1])) == "6.693e-03"  # α₁²
    _, gamma_prime = gamma_and_derivative(schedule, torch.rand(5, dtype=torch.float64))
    assert torch.allclose(gamma_prime, torch.full_like(gamma_prime, 18.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("x, expected", [(0.0, "1.125e-05"), (0.5, "8.479e-04"), (1.0, "3.358e-03")])
def test_prior_kl_per_dimension(x, expected):
    gamma_1 = FixedLinearSchedule()(torch.ones(1, dtype=torch.float64))
    kl = prior_kl(torch.full((1, 1, 1, 1), x, dtype=torch.float64), gamma_1)
    assert sig4(float(kl)) == expected
    # the same number from the closed form ½(σ₁² + α₁² x² − log σ₁² − 1) written out
    s1, a1 = 1 / (1 + math.exp(-5.0)), 1 / (1 + math.exp(5.0))
    assert float(kl) == pytest.approx(0.5 * (s1 + a1 * x * x - math.log(s1) - 1), rel=1e-12)


def test_bad_endpoints_are_rejected():
    with pytest.raises(ValueError, match="gamma_min must be < gamma_max"):
        FixedLinearSchedule(5.0, -13.3)
