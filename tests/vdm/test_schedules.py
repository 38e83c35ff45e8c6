"""Learned schedules start at the default endpoints, stay monotone and give γ' by autograd."""

import pytest
import torch

from unetlab.vdm import (
    VDM,
    LearnedLinearSchedule,
    MonotoneSchedule,
    NoDownsampleUNet,
    bins_to_x,
    gamma_and_derivative,
)


@pytest.mark.parametrize("schedule", [LearnedLinearSchedule(), MonotoneSchedule(n_features=64)])
def test_learned_schedules_start_at_default_endpoints(schedule):
    gamma = schedule(torch.tensor([0.0, 1.0]))
    assert torch.allclose(gamma, torch.tensor([-13.3, 5.0]), atol=1e-5)


def test_monotone_schedule_is_increasing_and_derivative_matches_finite_difference():
    schedule = MonotoneSchedule(n_features=64, generator=torch.Generator().manual_seed(1)).double()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    gamma, gamma_prime = gamma_and_derivative(schedule, t)
    assert bool((torch.diff(gamma) > 0).all()) and bool((gamma_prime > 0).all())
    h = 1e-6
    fd = (schedule(t + h) - schedule(t - h)) / (2 * h)
    assert torch.allclose(gamma_prime, fd, rtol=1e-6)


def test_learned_endpoints_receive_gradient_from_the_bound():
    torch.manual_seed(0)
    net = NoDownsampleUNet(channels=8, n_blocks=1, norm_groups=4, attention=False)
    model = VDM(net, LearnedLinearSchedule())
    x = bins_to_x(torch.randint(0, 256, (4, 1, 8, 8)))
    terms = model.terms(x, torch.Generator().manual_seed(0))
    sum(t.mean() for t in terms.values()).backward()
    assert float(model.schedule.b.grad.abs()) > 0 and float(model.schedule.w.grad.abs()) > 0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="n_features"):
        MonotoneSchedule(n_features=0)
    with pytest.raises(ValueError, match="parameterization"):
        VDM(NoDownsampleUNet(channels=8, n_blocks=1, norm_groups=4), LearnedLinearSchedule(), "x")
    with pytest.raises(ValueError, match="channels"):
        NoDownsampleUNet(channels=10, norm_groups=4)
