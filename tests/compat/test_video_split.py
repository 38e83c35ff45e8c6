"""The split forward of the video UNets (text-to-video's UNet3DConditionModel, AnimateDiff's UNetMotionModel)
equals their forward bit for bit (AnimateDiff with SDXL's or IP-Adapter's `added_cond_kwargs` too), and decoding k
timesteps at once equals decoding them one by one (float64)."""

import pytest
import torch
from diffusers import UNetMotionModel

from unetlab.unet import decode, encode

from .pipelines import add_ip_adapter, build


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


def _sdxl_motion():
    """A tiny AnimateDiff-SDXL UNet (`addition_embed_type="text_time"`)."""
    torch.manual_seed(0)
    return UNetMotionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
        num_attention_heads=2,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=8 + 6 * 4,
    ).eval()


def _ip_motion():
    """AnimateDiff's UNetMotionModel with an IP-Adapter (`encoder_hid_dim_type="ip_image_proj"`)."""
    unet = build("animatediff")[0].unet
    add_ip_adapter(unet)
    return unet


def _map(added: dict, fn) -> dict:
    return {k: [fn(e) for e in v] if isinstance(v, list) else fn(v) for k, v in added.items()}


@pytest.mark.parametrize("variant", ["sdxl", "ip_adapter"])
def test_motion_split_forward_is_exact_with_added_cond_kwargs(variant):
    unet = _sdxl_motion() if variant == "sdxl" else _ip_motion()
    g = torch.Generator().manual_seed(1)
    x, ehs = _inputs(unet, torch.float32, True)
    added = (
        dict(text_embeds=torch.randn(2, 8, generator=g), time_ids=torch.randn(2, 6, generator=g) * 100)
        if variant == "sdxl"
        else dict(image_embeds=[torch.randn(2, 1, 8, generator=g)])
    )
    with torch.no_grad():
        full = unet(x, 500, encoder_hidden_states=ehs, added_cond_kwargs=added).sample
        without = unet(x, 500, encoder_hidden_states=ehs, added_cond_kwargs=_map(added, torch.zeros_like)).sample
        split = decode(unet, encode(unet, x, 500, encoder_hidden_states=ehs, added_cond_kwargs=added), [500])
        unet.to(torch.float64)
        cond = dict(encoder_hidden_states=ehs.double(), added_cond_kwargs=_map(added, torch.Tensor.double))
        state = encode(unet, x.double(), 500, **cond)
        both, one = decode(unet, state, [500, 300]), decode(unet, state, [300])
    assert torch.equal(split, full) and not torch.equal(full, without)  # the added conditioning takes effect
    assert ((both[2:] - one).abs().max() / one.abs().max()).item() <= 1e-10  # decoding 2 timesteps at once
