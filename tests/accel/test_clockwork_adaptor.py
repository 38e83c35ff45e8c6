"""Clockwork's learned adaptor: identity-initialised it is the identity adaptor bit for bit; trained (here: random
output weights) it computes what plain torch hooks on the unpatched UNet compute; it saves, loads and refuses."""

import json

import pytest
import torch

import unetlab
from unetlab.accel import load_config
from unetlab.accel.clockwork import ClockworkConfig
from unetlab.accel.clockwork_adaptor import ClockworkAdaptor, load_adaptor
from unetlab.testing import tiny_sd_pipeline, tiny_unet
from unetlab.unet import example_inputs

STEPS = 6


def _run(pipe, guidance=7.0):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg if guidance > 1 else None,
        guidance_scale=guidance,
        num_images_per_prompt=2,
        num_inference_steps=STEPS,
        height=128,
        width=128,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


def _trained(adaptor: ClockworkAdaptor, seed: int = 3) -> ClockworkAdaptor:
    """The adaptor with non-zero output weights, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        adaptor.conv_up.weight.copy_(torch.randn(adaptor.conv_up.weight.shape, generator=g) * 0.1)
        adaptor.conv_up.bias.copy_(torch.randn(adaptor.conv_up.bias.shape, generator=g) * 0.1)
    return adaptor


@pytest.mark.parametrize("level,clock,guidance", [(1, 2, 7.0), (2, 3, 7.0), (1, 3, 1.0)])
def test_identity_initialised_adaptor_is_the_identity_adaptor_through_a_pipeline(level, clock, guidance):
    pipe = tiny_sd_pipeline()
    base = _run(pipe, guidance)
    with unetlab.clockwork(pipe, clock=clock, level=level) as h:
        identity = _run(pipe, guidance)
        calls = h.calls
    adaptor = ClockworkAdaptor.from_unet(pipe.unet, level)
    with unetlab.clockwork(pipe, clock=clock, level=level, adaptor=adaptor) as h:
        learned = _run(pipe, guidance)
        assert h.calls == calls and any(not full for _, full in calls)
    assert torch.equal(learned, identity) and not torch.equal(identity, base)
    assert torch.equal(_run(pipe, guidance), base)  # removed: the plain pipeline again
    assert "_unetlab_patches" not in pipe.unet.__dict__


@pytest.mark.parametrize("family", ["ddpm", "sd"])
def test_identity_initialised_adaptor_on_a_bare_unet(family):
    unet = tiny_unet(family)
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    ts = (900, 800, 700, 600, 500)
    with torch.no_grad():
        with unetlab.clockwork(unet, clock=3):
            identity = [unet(x * (1 - 0.1 * i), t, **cond).sample for i, t in enumerate(ts)]
        with unetlab.clockwork(unet, clock=3, adaptor=ClockworkAdaptor.from_unet(unet, 1)):
            learned = [unet(x * (1 - 0.1 * i), t, **cond).sample for i, t in enumerate(ts)]
    assert all(torch.equal(a, b) for a, b in zip(identity, learned))


def _reference(unet, level, adaptor, x, ts, cond, clock):
    """phi applied with plain torch hooks on the unpatched UNet: the deep path runs, its output is replaced."""
    n = len(unet.down_blocks)
    down, deep = unet.down_blocks[level - 1].downsamplers[0], unet.down_blocks[level]
    last = unet.up_blocks[n - level - 1]
    seen, outs, prev = {}, [], {}
    text = cond.get("encoder_hidden_states")
    hooks = [
        down.register_forward_pre_hook(lambda m, a: seen.__setitem__("r_in", a[0])),
        deep.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("temb", k["temb"]), with_kwargs=True),
    ]

    def replace(module, args, out):
        if seen["cheap"]:
            pooled = None if text is None else text.mean(dim=1)
            out = adaptor(seen["r_in"], prev["r"], seen["temb"], pooled)
        prev["r"] = out
        return out

    hooks.append(last.register_forward_hook(replace))
    try:
        for i, t in enumerate(ts):
            seen["cheap"] = i % clock != 0
            outs.append(unet(x * (1 - 0.1 * i), t, **cond).sample)
    finally:
        for h in hooks:
            h.remove()
    return outs


@pytest.mark.parametrize("family,level", [("ddpm", 1), ("sd", 1), ("sd", 2)])
def test_trained_adaptor_equals_an_independent_hook_reference(family, level):
    unet = tiny_unet(family)
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    adaptor = _trained(ClockworkAdaptor.from_unet(unet, level))
    ts = (900, 800, 700, 600, 500, 400)
    with torch.no_grad():
        ref = _reference(unet, level, adaptor, x, ts, cond, clock=3)
        with unetlab.clockwork(unet, clock=3, level=level, adaptor=adaptor):
            got = [unet(x * (1 - 0.1 * i), t, **cond).sample for i, t in enumerate(ts)]
        with unetlab.clockwork(unet, clock=3, level=level):
            identity = [unet(x * (1 - 0.1 * i), t, **cond).sample for i, t in enumerate(ts)]
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    assert not torch.equal(got[1], identity[1]) and torch.equal(got[0], identity[0])


def test_saved_adaptor_round_trips_with_identical_outputs(tmp_path):
    pipe = tiny_sd_pipeline()
    adaptor = _trained(ClockworkAdaptor.from_unet(pipe.unet, 1))
    with unetlab.clockwork(pipe, adaptor=adaptor):
        expected = _run(pipe)
    adaptor.save_pretrained(tmp_path / "adaptor")
    assert sorted(p.name for p in (tmp_path / "adaptor").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    with unetlab.clockwork(pipe, adaptor=tmp_path / "adaptor") as h:
        assert torch.equal(_run(pipe), expected)
        h.config.save(tmp_path / "cw.json")
    saved = json.loads((tmp_path / "cw.json").read_text())
    assert saved["adaptor"] == str(tmp_path / "adaptor") and saved["level"] == 1
    with unetlab.accel.apply(pipe, load_config(tmp_path / "cw.json")):
        assert torch.equal(_run(pipe), expected)
    loaded = load_adaptor(str(tmp_path / "adaptor"))
    with unetlab.clockwork(pipe, adaptor=loaded), pytest.raises(ValueError):
        ClockworkConfig(adaptor=adaptor).to_dict()  # built in memory: no name to save


def test_level_follows_the_adaptor_unless_given(tmp_path):
    unet = tiny_unet("sd")
    ClockworkAdaptor.from_unet(unet, 2).save_pretrained(tmp_path / "a2")
    assert ClockworkConfig(adaptor=str(tmp_path / "a2")).level == 2
    assert ClockworkConfig(adaptor=ClockworkAdaptor.from_unet(unet, 2)).level == 2
    assert ClockworkConfig().level == 1


@pytest.mark.parametrize(
    "make,error,start",
    [
        (lambda u, p: 3, TypeError, "adaptor:"),
        (lambda u, p: torch.nn.Linear(2, 2), TypeError, "adaptor:"),
        (lambda u, p: "no-such-adaptor", ValueError, "adaptor:"),
        (lambda u, p: str(p), FileNotFoundError, "adaptor:"),  # a folder without config.json
        (lambda u, p: ClockworkAdaptor.from_unet(tiny_unet("ddpm"), 1), ValueError, "adaptor: made for another UNet"),
        (
            lambda u, p: ClockworkAdaptor(**{**dict(ClockworkAdaptor.from_unet(u, 2).config), "level": 1}),
            ValueError,
            "adaptor: made for another UNet",
        ),
    ],
)
def test_bad_adaptor_arguments_raise_one_line_errors(tmp_path, make, error, start):
    unet = tiny_unet("sd")
    with pytest.raises(error) as e:
        unetlab.clockwork(unet, level=1, adaptor=make(unet, tmp_path))
    assert str(e.value).startswith(start) and "\n" not in str(e.value)
    assert "_unetlab_patches" not in unet.__dict__
    assert not unet.down_blocks[0].downsamplers[0]._forward_pre_hooks


def test_adaptor_refuses_unets_it_cannot_plug_into():
    with pytest.raises(ValueError, match=r"^adaptor: .*skip image"):
        ClockworkAdaptor.from_unet(tiny_unet("ddpm_skip"), 1)
    with pytest.raises(ValueError, match=r"^level: expected an int from 1 to 2"):
        ClockworkAdaptor.from_unet(tiny_unet("sd"), 3)


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_shipped_adaptor_loads_by_name_and_fits_only_its_model(name):
    from unetlab.accel.clockwork_adaptor import shipped_adaptor_for, shipped_path

    if not (shipped_path(name) / "config.json").is_file():
        pytest.skip(f"no shipped {name} adaptor")
    pipe = unetlab.load(name)
    assert shipped_adaptor_for(pipe.unet) == name
    with unetlab.clockwork(pipe, adaptor=name) as h:
        assert h.adaptor.source == name and h.config.to_dict()["adaptor"] == name
        assert h.adaptor.conv_up.weight.abs().sum() > 0  # trained, not the identity
    other = unetlab.load("shapes" if name == "digits" else "digits")
    with pytest.raises(ValueError, match=r"^adaptor: made for another UNet"):
        unetlab.clockwork(other, adaptor=name)
    with pytest.raises(ValueError, match=r"^adaptor: no shipped adaptor was distilled for this UNet"):
        shipped_adaptor_for(tiny_unet("sd"))


def test_forecasting_with_a_learned_adaptor_is_refused():
    from unetlab.accel import ClockworkConfig

    with pytest.raises(ValueError, match=r"^reuse: forecasting replaces the identity adaptor") as e:
        ClockworkConfig(clock=2, adaptor="digits", reuse="taylor1")
    assert "\n" not in str(e.value)
