"""The split forward equals the model's forward, for every supported family."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from unetlab.testing import FAMILIES, tiny_controlnet, tiny_unet
from unetlab.unet import EncoderState, UnsupportedUNetError, anatomy, decode, encode, example_inputs


def _inputs(unet, batch=2, size=None, seed=0):
    x, cond = example_inputs(unet, batch, size, seq_len=5, generator=torch.Generator().manual_seed(seed))
    if isinstance(unet, UNet2DConditionModel) and unet.config.addition_embed_type == "text":
        cond["attention_mask"] = torch.tensor([[1, 1, 1, 0, 0]] * batch)
    return x, cond


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("t", [1, 250, 999])
def test_decode_of_encode_equals_forward(family, t):
    unet = tiny_unet(family)
    x, cond = _inputs(unet)
    with torch.no_grad():
        ref = unet(x, t, **cond).sample
        out = decode(unet, encode(unet, x, t, **cond), [t])
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-5


@pytest.mark.parametrize("family", ["sd", "sdxl", "ddpm"])
def test_decoding_the_encoders_own_timestep_reuses_its_embedding_bit_for_bit(family):
    unet = tiny_unet(family)
    x, cond = _inputs(unet)
    made = []
    hook = unet.time_embedding.register_forward_hook(lambda *a: made.append(1))
    t = torch.tensor(250)
    with torch.no_grad():
        state = encode(unet, x, t, **cond)
        same = decode(unet, state, [t])
        assert len(made) == 1  # the model's forward makes it once too
        other = decode(unet, state, [torch.tensor(250)])  # another timestep object: made again
        assert len(made) == 2
    hook.remove()
    assert torch.equal(same, other)


@pytest.mark.parametrize("family", ["sd", "sdxl"])  # IF's resnet upsamplers take no upsample_size in diffusers
def test_odd_size_uses_upsample_size(family):
    unet = tiny_unet(family)
    x, cond = _inputs(unet, size=(13, 11))
    with torch.no_grad():
        ref = unet(x, 300, **cond).sample
        state = encode(unet, x, 300, **cond)
        out = decode(unet, state, [300])
    assert state.forward_upsample_size
    assert out.shape == ref.shape == (2, unet.config.out_channels, 13, 11)
    assert _rel(out, ref) < 1e-5


@pytest.mark.parametrize("size", [16, (13, 11)])
def test_controlnet_residuals(size):
    unet = tiny_unet("sd")
    net = tiny_controlnet(unet)
    x, cond = _inputs(unet, size=size)
    h, w = x.shape[-2:]
    image = torch.randn(2, 3, h * 8, w * 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        down, mid = net(
            x, 400, encoder_hidden_states=cond["encoder_hidden_states"], controlnet_cond=image, return_dict=False
        )
        assert mid.abs().sum() > 0
        kw = dict(cond, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        ref = unet(x, 400, **kw).sample
        plain = unet(x, 400, **cond).sample
        out = decode(unet, encode(unet, x, 400, **kw), [400])
    assert _rel(out, ref) < 1e-5
    assert _rel(plain, ref) > 1e-3  # the residuals matter


@pytest.mark.parametrize("family", FAMILIES)
def test_k_timesteps_in_one_call_equal_k_single_decodes(family):
    unet = tiny_unet(family)
    x, cond = _inputs(unet)
    ts = [900, 640, torch.tensor(300), 20.5]
    with torch.no_grad():
        state = encode(unet, x, 900, **cond)
        together = decode(unet, state, ts)
        singles = torch.cat([decode(unet, state, [t]) for t in ts])
        ref_last = unet(x, 20.5, **cond).sample
    assert together.shape == (len(ts) * 2, unet.config.out_channels, *x.shape[2:])
    assert _rel(together, singles) < 1e-5
    # the decoder really uses each copy's own timestep
    assert _rel(together[:2], together[-2:]) > 1e-4
    assert ref_last.shape == together[-2:].shape


def test_per_sample_timesteps_and_single_timestep_bitwise():
    unet = tiny_unet("sd")
    x, cond = _inputs(unet)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        assert torch.equal(decode(unet, encode(unet, x, t, **cond), [t]), unet(x, t, **cond).sample)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_skip_consumed_once_and_flops_add_up(family):
    unet = tiny_unet(family)
    a = anatomy(unet)
    produced = [i for p in a.parts for i in p.skips_produced]
    consumed = [i for p in a.parts for i in p.skips_consumed]
    assert sorted(produced) == list(range(len(a.skip_shapes)))
    assert sorted(consumed) == sorted(produced)
    assert sum(p.flops for p in a.parts) == a.total_flops > 0
    assert abs(sum(p.share for p in a.parts) - 1.0) < 1e-9
    assert a.share_of("decoder") > 0 and a.share_of("encoder") > 0
    assert "down_blocks.0" in a.table()


def test_unsupported_class_and_options():
    with pytest.raises(UnsupportedUNetError, match="Conv2d is not supported"):
        encode(torch.nn.Conv2d(4, 4, 1), torch.zeros(1, 4, 8, 8), 1)
    unet = tiny_unet("sd")
    x, cond = _inputs(unet)
    with pytest.raises(UnsupportedUNetError, match="mid_block_additional_residual"):
        encode(unet, x, 1, down_block_additional_residuals=(torch.zeros(1),), **cond)
    with pytest.raises(UnsupportedUNetError, match="LoRA scale"):
        encode(unet, x, 1, cross_attention_kwargs={"scale": 0.5}, **cond)
    hint = tiny_unet("sd")
    hint.register_to_config(addition_embed_type="image_hint")
    with pytest.raises(UnsupportedUNetError, match="addition_embed_type='image_hint'"):
        encode(hint, x, 1, **cond)
    with pytest.raises(TypeError, match="timesteps: expected a list"):
        decode(unet, encode(unet, x, 1, **cond), 1)
    with pytest.raises(ValueError, match="timesteps: expected at least one"):
        decode(unet, encode(unet, x, 1, **cond), [])


def test_state_from_other_unet_is_rejected():
    a, b = tiny_unet("sd"), tiny_unet("sdxl")
    x, cond = _inputs(a)
    with torch.no_grad(), pytest.raises(RuntimeError):
        decode(b, encode(a, x, 1, **cond), [1])


@pytest.mark.parametrize("family", ["ddpm", "ddpm_skip", "ddpm_fourier"])
def test_unet2d_residuals_zero_is_bitwise_and_each_lands_on_its_skip(family):
    unet = tiny_unet(family)
    x, cond = _inputs(unet)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        plain = encode(unet, x, t, **cond)
        zeros = dict(
            down_block_additional_residuals=[torch.zeros_like(s) for s in plain.skips],
            mid_block_additional_residual=torch.zeros_like(plain.mid),
        )
        ref = unet(x, t, **cond).sample
        assert torch.equal(decode(unet, plain, [t]), ref)
        assert torch.equal(decode(unet, encode(unet, x, t, **zeros, **cond), [t]), ref)
        g = torch.Generator().manual_seed(5)
        down = [torch.randn(s.shape, generator=g) for s in plain.skips]
        mid = torch.randn(plain.mid.shape, generator=g)
        by_hand = EncoderState(
            skips=tuple(s + r for s, r in zip(plain.skips, down)),
            mid=plain.mid + mid,
            batch_size=2,
            class_emb=plain.class_emb,
            timesteps=plain.timesteps,
        )
        out = decode(
            unet,
            encode(unet, x, t, down_block_additional_residuals=down, mid_block_additional_residual=mid, **cond),
            [t],
        )
    assert torch.equal(out, decode(unet, by_hand, [t]))
    assert _rel(out, ref) > 1e-3
    with pytest.raises(ValueError, match="expected .* tensors"):
        encode(unet, x, t, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid, **cond)
    with pytest.raises(UnsupportedUNetError, match="give both"):
        encode(unet, x, t, down_block_additional_residuals=down, **cond)
