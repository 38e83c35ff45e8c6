"""LikelihoodConfig's Fourier input features: they reach the score net, survive save/load, and bad values fail."""

import math

import pytest
import torch

from unetlab.likelihood import LikelihoodConfig, build_model, load_model, save_model

SMALL = {"channels": 8, "blocks": 1, "attention": False}


def test_score_net_sees_z_and_sin_cos_of_each_exponent():
    model = build_model(LikelihoodConfig(fourier_exponents=[3, 6], **SMALL))
    seen = {}
    model.score_net.conv_in.register_forward_hook(lambda m, args, out: seen.update(h=args[0]))
    z = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    model.double().score_net(z, torch.zeros(2, dtype=torch.float64))
    a, b = (2.0**n * 2 * math.pi * z for n in (3, 6))
    assert torch.allclose(seen["h"], torch.cat([z, a.sin(), b.sin(), a.cos(), b.cos()], 1), rtol=0, atol=1e-12)


def test_fourier_exponents_round_trip_through_save_and_load(tmp_path):
    cfg = LikelihoodConfig(method="diffenc", encoder="nt", fourier_exponents=[3, 4, 6, 7], **SMALL)
    model = build_model(cfg)
    save_model(model, cfg, tmp_path)
    loaded, loaded_cfg = load_model(tmp_path)
    assert loaded_cfg == cfg and loaded_cfg.fourier_exponents == (3, 4, 6, 7)
    x, g = torch.rand(3, 1, 8, 8) * 2 - 1, torch.zeros(3)
    assert torch.equal(loaded.score_net(x, g), model.score_net(x, g))


def test_no_exponents_means_no_features():
    assert build_model(LikelihoodConfig(fourier_exponents=(), **SMALL)).score_net.conv_in.in_channels == 1


@pytest.mark.parametrize("bad", [(3, 3), (-1,), (17,), (2.5,)])
def test_bad_fourier_exponents_name_the_argument(bad):
    with pytest.raises(ValueError, match="fourier_exponents: .* distinct ints in 0..16"):
        LikelihoodConfig(fourier_exponents=bad)
