"""Clockwork's learned adaptor keeps its state per call slot: on pipelines that call the UNet several times per
step (SAG, PAG, Panorama's views) an identity-initialised adaptor computes the identity adaptor bit for bit."""

import pytest
import torch

from unetlab.accel import ClockworkAdaptor, ClockworkConfig, apply

from .pipelines import build, run


@pytest.mark.parametrize("name", ["sag", "pag", "panorama", "sd_img2img"])
def test_identity_initialised_adaptor_equals_the_identity_adaptor(name):
    pipe, kw = build(name)
    with torch.no_grad():
        plain = run(pipe, kw)
        with apply(pipe, ClockworkConfig(clock=3)):
            identity = run(pipe, kw)
        with apply(pipe, ClockworkConfig(clock=3, adaptor=ClockworkAdaptor.from_unet(pipe.unet, 1))) as h:
            learned = run(pipe, kw)
            assert len({slot for slot in h.deep._prev}) >= (2 if name in ("sag", "panorama") else 1)
    assert torch.equal(learned, identity) and not torch.equal(identity, plain)
