"""Handles after removal: `with` on a removed handle raises; a deep copy of a patched UNet or pipeline is refused in
one line (it would carry hooks and claims no handle can remove), and after `.remove()` the copy is plain."""

import copy

import pytest
import torch

import unetlab
from unetlab.patching import claims
from unetlab.recipes import Recipe
from unetlab.testing import tiny_sd_pipeline

STEPS = 4
APPLY = {
    "branch_cache": lambda pipe: unetlab.branch_cache(pipe, interval=2),
    "encoder_propagation": lambda pipe: unetlab.encoder_propagation(
        pipe, key_steps="uniform:2", parallel=False, noise_injection=None
    ),
    "recipe": lambda pipe: unetlab.accelerate(
        pipe, Recipe(STEPS, "DDIMScheduler", (unetlab.accel.BranchCacheConfig(interval=2),))
    ),
}


def _run(pipe):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        guidance_scale=5.0,
        num_inference_steps=STEPS,
        height=64,
        width=64,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


def _one_line(err) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind", APPLY)
def test_with_on_a_removed_handle_raises(kind):
    pipe = tiny_sd_pipeline()
    plain = _run(pipe)
    with APPLY[kind](pipe) as h:
        pass
    with pytest.raises(RuntimeError) as err:
        with h:
            pytest.fail("the block of a removed handle ran")
    assert f"{kind}: this handle was removed" in _one_line(err)
    h = APPLY[kind](pipe)
    h.remove()
    with pytest.raises(RuntimeError, match="was removed"):
        h.__enter__()
    assert torch.equal(_run(pipe), plain) and not claims(pipe.unet)


@pytest.mark.parametrize("kind", APPLY)
def test_deep_copies_of_patched_models_are_refused_and_plain_after_removal(kind):
    pipe = tiny_sd_pipeline()
    twin = copy.deepcopy(pipe)  # an unpatched copy: the reference
    h = APPLY[kind](pipe)
    for target in (pipe, pipe.unet):
        with pytest.raises(RuntimeError) as err:
            copy.deepcopy(target)
        assert "deepcopy: this UNet2DConditionModel has unetlab patches on it" in _one_line(err)
    patched = _run(pipe)
    h.remove()
    assert "__deepcopy__" not in pipe.unet.__dict__
    for clone in (copy.deepcopy(pipe), copy.deepcopy(pipe.unet)):
        unet = getattr(clone, "unet", clone)
        assert not claims(unet) and not any(hasattr(m, "_diffusers_hook") for m in unet.modules())
        assert "forward" not in unet.__dict__
    clone = copy.deepcopy(pipe)
    assert torch.equal(_run(clone), _run(twin))
    with APPLY[kind](clone):  # the copy can be accelerated like the original
        assert torch.equal(_run(clone), patched)
