"""Anchor attention: equals cross-frame attention written by hand, is the plain pipeline on one frame, computes the
anchors' keys/values once per step, composes with branch caching, and leaves no trace when removed."""

import pytest
import torch

import unetlab
from helpers.cross_frame_reference import ReferenceCrossFrame
from helpers.cross_frame_reference import self_attention as _self_attention
from unetlab.accel.anchor_attention import AnchorAttentionConfig, anchor_attention
from unetlab.testing import tiny_sd_pipeline, tiny_unet

STEPS = 4


def _inputs(copies, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, 4, 16, 16, generator=g, dtype=torch.float64).repeat(copies, 1, 1, 1)
    cond = torch.randn(copies, 1, 5, 16, generator=g, dtype=torch.float64).repeat_interleave(frames, 0)[:, 0]
    return x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64), cond


def _reference(unet, x, cond, copies, frames, anchors, own, timesteps):
    originals = {n: m.processor for n, m in _self_attention(unet).items()}
    for m in _self_attention(unet).values():
        m.set_processor(ReferenceCrossFrame(copies, frames, anchors, own))
    try:
        return [unet(x, t, encoder_hidden_states=cond).sample for t in timesteps]
    finally:
        for n, m in _self_attention(unet).items():
            m.set_processor(originals[n])


def _rows(x, copies, frames, idx):
    return x.view(copies, frames, *x.shape[1:])[:, idx].reshape(-1, *x.shape[1:])


@pytest.mark.parametrize(
    "copies,anchors,own,batches",
    [
        (1, [0, 1, 2, 3, 4], True, []),  # every frame an anchor: full cross-frame attention
        (2, [1, 3], True, [[0, 2], [4]]),  # CFG-like batch of 2 copies, own keys/values included
        (3, [0], False, [[1, 2, 3], [4]]),  # InstructPix2Pix-like batch of 3 copies, first-frame attention
    ],
)
def test_equals_cross_frame_attention_by_hand(copies, anchors, own, batches):
    unet = tiny_unet("sd").double()
    frames, timesteps = 5, [900, 500]
    x, cond = _inputs(copies, frames)
    ref = _reference(unet, x, cond, copies, frames, anchors, own, timesteps)
    got = [torch.empty_like(r) for r in ref]
    with anchor_attention(unet, anchors=anchors, own_kv=own) as h:
        for kind, idx in [("anchors", anchors)] + [("frames", b) for b in batches]:
            with h.phase_of(kind, len(idx)):
                for s, t in enumerate(timesteps):
                    out = unet(
                        _rows(x, copies, frames, idx), t, encoder_hidden_states=_rows(cond, copies, frames, idx)
                    ).sample
                    got[s].view(copies, frames, *out.shape[1:])[:, idx] = out.view(copies, len(idx), *out.shape[1:])
    for r, o in zip(ref, got):
        assert ((r - o).abs().max() / r.abs().max()).item() < 1e-10  # float64: measured 1.2e-15 to 1.7e-15
    plain = unet(x, timesteps[0], encoder_hidden_states=cond).sample
    assert (plain - ref[0]).abs().max() > 1e-4  # cross-frame attention really changes the output


def _embeds(frames=1):
    g = torch.Generator().manual_seed(0)
    return torch.randn(frames, 5, 16, generator=g), torch.randn(frames, 5, 16, generator=g)


def _run(pipe, frames=1, latents=None):
    pos, neg = _embeds(frames)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(frames, 4, 16, 16, generator=g) if latents is None else latents
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        guidance_scale=7.0,
        num_inference_steps=STEPS,
        height=128,
        width=128,
        output_type="latent",
        latents=latents,
    ).images


def _untouched(pipe, processors):
    mods = list(pipe.unet.modules())
    return (
        not any("forward" in m.__dict__ or hasattr(m, "_diffusers_hook") for m in mods)
        and "_unetlab_patches" not in pipe.unet.__dict__
        and not {"step", "set_timesteps"} & set(pipe.scheduler.__dict__)
        and all(pipe.unet.attn_processors[k] is v for k, v in processors.items())
    )


def test_one_frame_is_the_plain_pipeline_and_removal_restores_exactly():
    pipe = tiny_sd_pipeline()
    processors = dict(pipe.unet.attn_processors)
    base = _run(pipe)
    h = anchor_attention(pipe, anchors=[0])
    with pytest.raises(RuntimeError, match="anchor_attention: already applied"):
        anchor_attention(pipe, count=2)
    idle = _run(pipe)  # outside a phase: the original processors
    with h.phase_of("anchors", 1):
        one = _run(pipe)
    h.remove()
    h.remove()
    assert torch.equal(idle, base) and torch.equal(one, base) and torch.equal(_run(pipe), base)
    assert _untouched(pipe, processors)


def test_anchor_keys_values_computed_once_per_step_and_reused_by_every_batch():
    pipe = tiny_sd_pipeline()
    layers = _self_attention(pipe.unet)
    rows = []
    hooks = [m.to_k.register_forward_hook(lambda mod, inp, out: rows.append(out.shape[0])) for m in layers.values()]
    frames = torch.randn(7, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    for own in (False, True):
        with anchor_attention(pipe, anchors=[0, 6], own_kv=own) as h:
            rows.clear()
            with h.phase_of("anchors", 2):
                _run(pipe, 2, frames[[0, 6]])
            assert rows == [2 * 2] * (len(layers) * STEPS)  # once per layer and step, both anchors, 2 copies
            rows.clear()
            for idx in ([1, 2, 3], [4, 5]):
                with h.phase_of("frames", len(idx)):
                    _run(pipe, len(idx), frames[idx])
            # the anchors' keys/values are never recomputed; a frame's own only when asked for
            assert rows == ([] if not own else [2 * 3] * (len(layers) * STEPS) + [2 * 2] * (len(layers) * STEPS))
            assert h.kv_computed == {"anchors": 2 * len(layers) * STEPS, "frames": 5 * len(layers) * STEPS * own}
    for hook in hooks:
        hook.remove()


def test_composes_with_branch_caching_and_refuses_encoder_propagation():
    pipe = tiny_sd_pipeline()
    processors = dict(pipe.unet.attn_processors)
    base = _run(pipe)
    bc = unetlab.branch_cache(pipe, interval=2)
    cached = _run(pipe)
    aa = anchor_attention(pipe, count=2)
    with aa.phase_of("anchors", 1):
        assert torch.equal(_run(pipe), cached)
    frames = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with aa.phase_of("anchors", 2):
        _run(pipe, 2, frames[[0, 2]])
    with aa.phase_of("frames", 1):
        assert torch.isfinite(_run(pipe, 1, frames[[1]])).all()
    aa.remove()
    assert torch.equal(_run(pipe), cached)
    bc.remove()
    assert torch.equal(_run(pipe), base) and _untouched(pipe, processors)
    with unetlab.encoder_propagation(pipe, key_steps=[0, 2]):
        with pytest.raises(RuntimeError, match="anchor_attention: does not compose with encoder_propagation"):
            anchor_attention(pipe, count=2)


def test_bad_arguments_are_one_line_errors():
    pipe = tiny_sd_pipeline()
    cases = [
        (dict(anchors=[0], count=2), "anchors: give one of"),
        (dict(anchors=[2, 1]), "anchors: expected a strictly increasing"),
        (dict(stride=0), "stride: expected an int >= 1"),
        (dict(own_kv="yes"), "own_kv: expected True or False"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            anchor_attention(pipe, **kwargs)
        assert "\n" not in str(err.value)
    with anchor_attention(pipe, anchors=[0, 5]) as h:
        with pytest.raises(
            ValueError, match=r"anchors: index 5 is out of range for a video of 4 frames \(valid: 0 to 3\)"
        ):
            h.anchors(4)
        with pytest.raises(RuntimeError, match="phase: no anchor keys/values are cached"):
            with h.phase_of("frames", 1):
                pass
        with h.phase_of("anchors", 3):
            with pytest.raises(RuntimeError, match="the UNet batch of 2 rows is not a multiple of the 3 frames"):
                _run(pipe, 1)  # guidance makes 2 rows of 1 frame, not copies of 3 frames
    assert AnchorAttentionConfig(stride=5).indices(12) == (0, 5, 10)
    assert AnchorAttentionConfig(count=3).indices(16) == (0, 8, 15)
    assert AnchorAttentionConfig().indices(2) == (0, 1)


def test_block_skipping_is_refused_in_either_order_for_one_reason():
    from unetlab.accel import SkipWindow

    pipe = tiny_sd_pipeline()
    plan = [SkipWindow("mid_block", 1, 2)]
    with unetlab.block_skip(pipe, plan):
        with pytest.raises(RuntimeError, match="both decide which blocks run at a step"):
            anchor_attention(pipe, count=2)
    with anchor_attention(pipe, count=2):
        with pytest.raises(RuntimeError, match="both decide which blocks run at a step"):
            unetlab.block_skip(pipe, plan)
