"""The peer packages through their adapters: they act, and removing them restores the pipeline exactly."""

import sys

import pytest
import torch

import unetlab
from unetlab.accel.peers import UnsupportedPeerError, check_deepcache, check_tome, deepcache, tome
from unetlab.testing import tiny_sd_pipeline, tiny_unet

STEPS = 6


def _run(pipe, guidance=7.0):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(prompt_embeds=pos, negative_prompt_embeds=neg if guidance > 1 else None, guidance_scale=guidance,
                num_inference_steps=STEPS, height=128, width=128, output_type="latent",
                generator=torch.Generator().manual_seed(1)).images


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
        assert h.config == dict(interval=3, branch=0)
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
        assert h.config["ratio"] == 0.5
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
    from ep_pipelines import reference

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
