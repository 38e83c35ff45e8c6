"""The split forward of the video UNets (text-to-video's UNet3DConditionModel, AnimateDiff's UNetMotionModel)
equals their forward bit for bit, and decoding k timesteps at once equals decoding them one by one (float64)."""

import pytest
import torch

from unetlab.unet import decode, encode

from .pipelines import build


def _inputs(unet, dtype, with_frames_in_batch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 8, generator=g, dtype=dtype)
    ehs = torch.randn(2 * 3 if with_frames_in_batch else 2, 5, 16, generator=g, dtype=dtype)
    return x, ehs


@pytest.mark.parametrize("name", ["text2video", "animatediff"])
def test_video_split_forward_is_exact(name):
    pipe, _ = build(name)
    unet = pipe.unet
    x, ehs = _inputs(unet, torch.float32, name == "animatediff")
    with torch.no_grad():
        full = unet(x, 500, encoder_hidden_states=ehs).sample
        split = decode(unet, encode(unet, x, 500, encoder_hidden_states=ehs), [500])
        assert torch.equal(split, full)
        unet.to(torch.float64)
        x, ehs = x.double(), ehs.double()
        state = encode(unet, x, 500, encoder_hidden_states=ehs)
        both = decode(unet, state, [500, 300])
        one = [unet(x, t, encoder_hidden_states=ehs).sample for t in (500, 300)]
    assert both.shape == (4, 4, 3, 8, 8)
    assert ((both[:2] - one[0]).abs().max() / one[0].abs().max()).item() <= 1e-10
    other = decode(unet, state, [300])
    assert ((both[2:] - other).abs().max() / other.abs().max()).item() <= 1e-10
