"""The peer packages through their adapters: they act, and removing them restores the pipeline exactly."""

import sys

import pytest
import torch

import unetlab
from unetlab.accel.peers import (
    DeepCacheConfig,
    UnsupportedPeerError,
    check_deepcache,
    check_tome,
    deepcache,
    pab,
    taylorseer,
    tgate,
    tome,
)
from unetlab.testing import tiny_sd_pipeline, tiny_unet

STEPS = 6


def _run(pipe, guidance=7.0):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg if guidance > 1 else None,
        guidance_scale=guidance,
        num_inference_steps=STEPS,
        height=128,
        width=128,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


def _state(unet):
    return [(type(m), sorted(m.__dict__)) for m in unet.modules()]


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_deepcache_acts_and_removal_restores(guidance):
    pytest.importorskip("DeepCache")
    pipe = tiny_sd_pipeline()
    before = _state(pipe.unet)
    base = _run(pipe, guidance)
    with deepcache(pipe, interval=1):
        assert torch.equal(_run(pipe, guidance), base)  # every step full
    with deepcache(pipe, interval=3, branch=0) as h:
        with pytest.raises(RuntimeError, match="deepcache: already applied"):
            deepcache(pipe)  # the helper itself would wrap its own wrappers
        cached = _run(pipe, guidance)
        assert h.config == DeepCacheConfig(interval=3, branch=0)
    assert (cached - base).abs().max() > 1e-3
    assert torch.equal(_run(pipe, guidance), base)
    assert _state(pipe.unet) == before


def test_deepcache_unsupported_targets():
    pytest.importorskip("DeepCache")
    with pytest.raises(UnsupportedPeerError, match="needs a pipeline") as e:
        deepcache(tiny_unet("sd"))
    assert "\n" not in str(e.value)
    with pytest.raises(UnsupportedPeerError, match="layers_per_block=2"):
        check_deepcache(tiny_sd_pipeline(), branch=1)
    with pytest.raises(ValueError, match="interval:"):
        deepcache(tiny_sd_pipeline(), interval=0)


def test_tome_acts_and_removal_restores():
    pytest.importorskip("tomesd")
    pipe = tiny_sd_pipeline()
    before = _state(pipe.unet)
    base = _run(pipe)
    with tome(pipe, ratio=0.0):  # nothing merged: tomesd's block forward must match diffusers' own
        torch.testing.assert_close(_run(pipe), base, rtol=1e-5, atol=1e-5)
    with tome(pipe, ratio=0.5) as h:
        merged, again = _run(pipe), _run(pipe)
        assert type(pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0]).__name__ == "ToMeBlock"
        assert h.config.ratio == 0.5
    assert torch.equal(merged, again)  # tomesd's random draws are reseeded at every call
    assert (merged - base).abs().max() > 1e-3
    assert torch.equal(_run(pipe), base)
    assert _state(pipe.unet) == before


def test_tome_unsupported_and_bad_arguments():
    pytest.importorskip("tomesd")
    with pytest.raises(UnsupportedPeerError, match="BasicTransformerBlock"):
        check_tome(tiny_unet("ddpm"))
    with pytest.raises(ValueError, match=r"ratio: expected a float in \[0, 0.75\)"):
        tome(tiny_sd_pipeline(), ratio=0.8)
    with pytest.raises(ValueError, match="max_downsample:"):
        tome(tiny_sd_pipeline(), max_downsample=3)


def test_missing_package_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "DeepCache", None)  # makes `import DeepCache` fail
    monkeypatch.setitem(sys.modules, "tomesd", None)
    with pytest.raises(UnsupportedPeerError, match=r"DeepCache is not installed .*unetlab\[peers\]"):
        check_deepcache(tiny_sd_pipeline())
    with pytest.raises(UnsupportedPeerError, match="tomesd is not installed"):
        tome(tiny_sd_pipeline())


@pytest.mark.parametrize("branch", [0, 1])
def test_layer_branch_caching_computes_what_the_deepcache_package_computes(branch):
    pytest.importorskip("DeepCache")
    pipe = tiny_sd_pipeline(unet=tiny_unet("sd", layers_per_block=2))
    with deepcache(pipe, interval=3, branch=branch):
        theirs = _run(pipe)
    with unetlab.branch_cache(pipe, interval=3, branch=branch, granularity="layer"):
        ours = _run(pipe)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("peer", ["deepcache", "tome"])
def test_peers_are_refused_in_any_stack_and_leave_nothing_behind(peer):
    pytest.importorskip("DeepCache" if peer == "deepcache" else "tomesd")
    pipe = tiny_sd_pipeline()
    before = _state(pipe.unet)
    apply_peer = deepcache if peer == "deepcache" else tome
    with apply_peer(pipe):
        with pytest.raises(RuntimeError, match=f"^branch_cache: {peer} is already applied") as e:
            unetlab.branch_cache(pipe)
        assert "\n" not in str(e.value)
    with pytest.raises(RuntimeError, match="^encoder_propagation: "):
        with apply_peer(pipe):
            unetlab.encoder_propagation(pipe)
    if peer == "deepcache":
        with unetlab.encoder_propagation(pipe):
            with pytest.raises(RuntimeError, match="^deepcache: encoder_propagation is already applied"):
                apply_peer(pipe)
    assert _state(pipe.unet) == before and "_unetlab_patches" not in pipe.unet.__dict__


def test_tome_under_encoder_propagation_is_the_hand_written_method_on_the_merged_blocks():
    """EP then ToMe (Faster Diffusion's SD + ToMe): the handle equals the reference method run by hand on the
    tomesd-patched UNet, bit for bit (sequential decoding), and removal in either order restores the pipeline."""
    pytest.importorskip("tomesd")
    from helpers.ep_pipelines import reference

    pipe = tiny_sd_pipeline()
    base, before, keys = _run(pipe), _state(pipe.unet), [0, 1, 3]
    with tome(pipe, ratio=0.5):
        with reference(pipe, keys):
            expected = _run(pipe)
        merged_only = _run(pipe)
    assert not torch.equal(expected, merged_only) and not torch.equal(merged_only, base)  # both act
    for order in ("tome first", "encoder propagation first"):
        ep = unetlab.encoder_propagation(pipe, key_steps=keys, parallel=False)
        merged = tome(pipe, ratio=0.5)
        assert torch.equal(_run(pipe), expected)
        first, second = (merged, ep) if order == "tome first" else (ep, merged)
        first.remove()
        second.remove()
        assert torch.equal(_run(pipe), base) and _state(pipe.unet) == before


PEERS = {
    "tgate": (tgate, dict(gate_step=2, sp_interval=2, warm_up=1)),
    "pab": (pab, dict(timestep_range=(0, 1000))),
    "taylorseer": (taylorseer, dict(interval=2, warm_up=2)),
}


@pytest.mark.parametrize("kind", list(PEERS))
def test_tgate_and_diffusers_caches_act_on_the_unet_and_removal_restores(kind):
    """Not no-ops: the output differs from plain sampling; each call starts from reset state (two calls agree);
    removal restores the pipeline bit for bit, its modules' attributes and the pipeline class."""
    if kind == "tgate":
        pytest.importorskip("tgate")
    apply_peer, kw = PEERS[kind]
    pipe = tiny_sd_pipeline()
    before, cls, base = _state(pipe.unet), type(pipe), _run(pipe)
    with apply_peer(pipe, **kw) as h:
        with pytest.raises(RuntimeError, match=f"{kind}: already applied"):
            apply_peer(pipe, **kw)
        first, second = _run(pipe), _run(pipe)
        assert h.kind == kind
    assert (first - base).abs().max() > 1e-3 and torch.equal(first, second)
    assert torch.equal(_run(pipe), base) and _state(pipe.unet) == before and type(pipe) is cls
    assert "tgate" not in pipe.__dict__


@pytest.mark.parametrize("kind", ["pab", "taylorseer"])
def test_diffusers_caches_are_refused_where_they_cannot_act(kind):
    apply_peer, kw = PEERS[kind]
    with pytest.raises(UnsupportedPeerError, match=f"{kind}: needs a pipeline") as e:
        apply_peer(tiny_unet("sd"), **kw)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="expected an int >= 1"):
        apply_peer(tiny_sd_pipeline(), **{"pab": {"spatial": 0}, "taylorseer": {"interval": 0}}[kind])


def test_taylorseer_default_patterns_match_nothing_in_a_unet_and_ours_do():
    """diffusers' own default (`^transformer_blocks.*attn`) hooks nothing in a UNet: the silent no-op the wrapper
    avoids by naming the UNet's attention and feed-forward modules."""
    from diffusers import TaylorSeerCacheConfig
    from diffusers.hooks.taylorseer_cache import apply_taylorseer_cache

    unet = tiny_unet("sd")
    apply_taylorseer_cache(unet, TaylorSeerCacheConfig())
    assert not any(hasattr(m, "_diffusers_hook") for m in unet.modules())
    pipe = tiny_sd_pipeline()
    with taylorseer(pipe):
        hooked = [n for n, m in pipe.unet.named_modules() if hasattr(m, "_diffusers_hook")]
    assert hooked and all(n.endswith(("attn1", "attn2", "ff")) for n in hooked)


def test_tgate_is_refused_outside_stable_diffusion_pipelines():
    pytest.importorskip("tgate")
    from diffusers import DDIMPipeline, DDIMScheduler

    with pytest.raises(UnsupportedPeerError, match="tgate: TgateSDLoader/TgateSDXLLoader run the steps of") as e:
        tgate(DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler()))
    assert "\n" not in str(e.value)
    with pytest.raises(UnsupportedPeerError, match="got a bare UNet"):
        tgate(tiny_unet("sd"))
    with pytest.raises(ValueError, match="gate_step: expected an int >= 0"):
        tgate(tiny_sd_pipeline(), gate_step=-1)
    pipe = tiny_sd_pipeline()
    with tgate(pipe), pytest.raises(UnsupportedPeerError, match="needs classifier-free guidance"):
        _run(pipe, guidance=1.0)


def test_the_tgate_control_row_drops_guidance_at_the_gate_step_without_caching():
    """The bench's control row for T-GATE runs the whole guidance batch before the gate step and the conditional
    rows alone from it on, every step full (nothing cached)."""
    from unetlab.bench.rows import default_rows

    pipe = tiny_sd_pipeline()
    rows = default_rows(pipe.unet, STEPS, quick=True)
    gate = next(r for r in rows if r.family == "tgate").recipe.accelerators[0].gate_step
    control = next(r for r in rows if "T-GATE's control" in r.name)
    with unetlab.accelerate(pipe, control.recipe) as h:
        _run(pipe)
        calls = h.handles[0].calls
    assert [full for _, full in calls] == [s < gate for s in range(STEPS)]


def test_tome_reaches_the_first_level_with_attention():
    """tomesd's default `max_downsample=1` merges nothing on SDXL-shaped UNets (no attention at their first level):
    by default the adapter goes down to the first level that has some."""
    pytest.importorskip("tomesd")
    from unetlab.accel.peers import _first_attention_downsample

    sdxl, sd = tiny_unet("sdxl"), tiny_unet("sd")
    assert type(sdxl.down_blocks[0]).__name__ == "DownBlock2D" and _first_attention_downsample(sdxl) == 2
    assert _first_attention_downsample(sd) == 1
    with tome(sdxl) as h:
        assert h.config.max_downsample == 2


@pytest.mark.parametrize("kind", list(PEERS))
def test_tgate_and_diffusers_caches_are_refused_in_any_stack(kind):
    if kind == "tgate":
        pytest.importorskip("tgate")
    apply_peer, kw = PEERS[kind]
    pipe = tiny_sd_pipeline()
    before = _state(pipe.unet)
    with apply_peer(pipe, **kw):
        with pytest.raises(RuntimeError, match=f"^branch_cache: {kind} is already applied") as e:
            unetlab.branch_cache(pipe)
        assert "\n" not in str(e.value)
    with unetlab.encoder_propagation(pipe), pytest.raises(RuntimeError, match=f"^{kind}: encoder_propagation is"):
        apply_peer(pipe, **kw)
    assert _state(pipe.unet) == before and "_unetlab_patches" not in pipe.unet.__dict__
