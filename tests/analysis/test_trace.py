"""Trace metrics equal their closed forms on a UNet whose parts are identities / known scalings."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from unetlab.analysis import decoder_encoder_ratio, trace
from unetlab.analysis.stats import Running, state_metrics
from unetlab.patching import ForwardPatch

STEPS, SEEDS = 5, [0, 1, 2]


def _scaling_unet() -> UNet2DModel:
    """conv_in is the identity, the head outputs eps = 0, and the mid block doubles its input."""
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
    ).eval()
    with torch.no_grad():
        unet.conv_in.weight.zero_()
        unet.conv_in.bias.zero_()
        for c in range(4):
            unet.conv_in.weight[c, c, 1, 1] = 1.0
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.zero_()
    return unet


def test_trace_matches_closed_forms_under_ddim_with_zero_eps():
    unet = _scaling_unet()
    ForwardPatch(unet.mid_block, "double", lambda orig, h, emb: 2 * h)
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    r = trace(unet, num_inference_steps=STEPS, seeds=SEEDS, scheduler=sched, progress=False)

    # With eps = 0, DDIM (eta = 0) gives x_{t'} = sqrt(abar_t' / abar_t) x_t: the stem output at step k is c_k x_T.
    sched.set_timesteps(STEPS)
    abar = [float(sched.alphas_cumprod[int(t)]) for t in sched.timesteps]
    c = [math.sqrt(a / abar[0]) for a in abar]
    x_T = torch.cat([torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in SEEDS]).double()
    power = x_T.pow(2).flatten(1).mean(1)
    fro = x_T.mean(1).flatten(1).norm(dim=1)
    assert r.halves == ["all"]
    assert r.log_snr[0] == pytest.approx(math.log(abar[0] / (1 - abar[0])))
    for k in range(1, STEPS):
        dc = c[k] - c[k - 1]
        assert r.curve("stem", "mse")[k] == pytest.approx(float((dc**2 * power).mean()), rel=1e-6)
        assert r.curve("stem", "mse", stat="std")[k] == pytest.approx(float((dc**2 * power).std()), rel=1e-5)
        assert r.curve("stem", "rel_l1")[k] == pytest.approx(abs(dc) / c[k], rel=1e-6)
        assert r.curve("stem", "cosine")[k] == pytest.approx(1.0, abs=1e-9)
        assert r.curve("stem", "fro_norm")[k] == pytest.approx(float((c[k] * fro).mean()), rel=1e-6)
        assert r.curve("head", "mse")[k] == 0.0
        # mid = 2 x (last down block's output): MSE x4, norm x2, relative change and cosine unchanged.
        last = "down_blocks.1"
        assert r.curve("mid_block", "mse")[k] == pytest.approx(4 * r.curve(last, "mse")[k], rel=1e-9)
        assert r.curve("mid_block", "fro_norm")[k] == pytest.approx(2 * r.curve(last, "fro_norm")[k], rel=1e-9)
        assert r.curve("mid_block", "rel_l1")[k] == pytest.approx(r.curve(last, "rel_l1")[k], rel=1e-9)
    assert math.isnan(r.curve("stem", "mse")[0])
    share = float(state_metrics(x_T)["low_freq_share"].mean())
    assert r.curve("stem", "low_freq_share") == pytest.approx([share] * STEPS, rel=1e-6)
    assert r.curve("skip.0", "fro_norm") == pytest.approx(r.curve("stem", "fro_norm"), rel=1e-12)


def test_batches_combine_like_one_batch_and_json_round_trips(tmp_path):
    unet = _scaling_unet()
    whole = trace(unet, num_inference_steps=3, seeds=SEEDS, progress=False)
    parts = trace(unet, num_inference_steps=3, seeds=SEEDS, batch_size=2, progress=False)
    for p in whole.parts:
        for m in ("mse", "fro_norm"):
            assert parts.curve(p, m)[1:] == pytest.approx(whole.curve(p, m)[1:], rel=1e-6)
            assert parts.curve(p, m, stat="std")[1:] == pytest.approx(whole.curve(p, m, stat="std")[1:], rel=1e-5)
    loaded = type(whole).load(whole.save(tmp_path / "trace.json"))
    assert loaded.curve("up_blocks.1", "mse")[1:] == whole.curve("up_blocks.1", "mse")[1:]
    assert decoder_encoder_ratio(loaded) == pytest.approx(decoder_encoder_ratio(whole))


def test_running_matches_torch_mean_and_std():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(10, generator=g, dtype=torch.float64)
    r = Running()
    for chunk in (v[:3], v[3:4], v[4:]):
        r.update(2, chunk)
    assert r.mean[2] == pytest.approx(float(v.mean()))
    assert r.std()[2] == pytest.approx(float(v.std()))
    assert r.n[:2] == [0, 0]


def test_bad_arguments_are_named():
    unet = _scaling_unet()
    with pytest.raises(ValueError, match="num_inference_steps"):
        trace(unet, num_inference_steps=0, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        trace(unet, num_inference_steps=2, seeds=[], progress=False)
    r = trace(unet, num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="metric"):
        r.curve("stem", "psnr")
    with pytest.raises(ValueError, match="part"):
        r.curve("down_blocks.9")
    with pytest.raises(TypeError, match="target"):
        trace(object(), progress=False)


def test_guided_halves_are_traced_apart():
    pipeline = pytest.importorskip("unetlab.models.pipeline")
    from unetlab.models.text import TextEncoder, shapes_vocabulary
    from unetlab.testing import tiny_unet

    unet = tiny_unet("sd", in_channels=3, out_channels=3, cross_attention_dim=16)
    text = TextEncoder(vocab=shapes_vocabulary(), hidden_size=16, num_layers=1, num_heads=2).eval()
    pipe = pipeline.ShapesPipeline(unet=unet, text_encoder=text, scheduler=DDIMScheduler(clip_sample=False))
    r = trace(
        pipe, ["a red circle", "a blue square"], num_inference_steps=3, seeds=[0], guidance_scale=3.0, progress=False
    )
    assert r.halves == ["uncond", "cond"] and r.default_half == "cond"
    assert r.metrics["cond"]["head"]["mse"]["count"][1] == 2
    assert r.curve("up_blocks.0", "mse", "cond") != r.curve("up_blocks.0", "mse", "uncond")
