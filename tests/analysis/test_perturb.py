"""Perturbation: sigma = 0 is the clean run bit for bit; noise at a level changes the output; levels validated."""

import pytest
import torch

from unetlab.analysis import Sampler, perturb, perturbation, resolution_levels
from unetlab.testing import tiny_unet


def test_zero_sigma_is_bit_identical_and_noise_is_reproducible():
    sampler = Sampler(tiny_unet("ddpm"), num_inference_steps=4)
    items = sampler.items([0, 1])
    clean = sampler.run(items)
    assert resolution_levels(sampler.unet) == [16, 8, 4]
    with perturbation(sampler.unet, sampler.scheduler, 8, 0.0):
        assert torch.equal(sampler.run(items), clean)
    with perturbation(sampler.unet, sampler.scheduler, 8, 0.5, noise_seed=3):
        a, b = sampler.run(items), sampler.run(items)
    assert torch.equal(a, b) and not torch.equal(a, clean)


def test_perturb_grid_and_errors():
    unet = tiny_unet("ddpm")
    s = perturb(unet, sigmas=[0.0, 0.5], seeds=[0], num_inference_steps=3, progress=False)
    assert s.levels == [16, 8, 4]
    assert [row[0] for row in s.matrix("mse")] == [0.0, 0.0, 0.0]
    assert all(row[1] > 0 for row in s.matrix("mse"))
    with pytest.raises(ValueError, match="levels"):
        perturb(unet, levels=[5], num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="sigmas"):
        perturb(unet, sigmas=[-1.0], num_inference_steps=2, progress=False)
