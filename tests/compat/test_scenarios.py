"""The scenarios that break naive caching: parallel decoding (float64), removal in both orders, refused stacks,
a replaced scheduler, a batch drop (CFG cut-off) and a prompt change mid-call, a compiled UNet (fullgraph, stacked,
compiled after applying), configs as JSON."""

from __future__ import annotations

import contextlib
import itertools
import warnings
from dataclasses import replace

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.callbacks import SDCFGCutoffCallback

import unetlab
from unetlab.accel import (
    BlockSkipConfig,
    BranchCacheConfig,
    ClockworkConfig,
    EncoderPropagationConfig,
    SkipWindow,
    apply,
    load_config,
)
from unetlab.accel.stacking import COMPOSE

from . import reference
from .pipelines import build, run
from .test_pipelines import compiled_graphs, deep_names, uncompiled, untouched

ACTIVE = {
    "encoder_propagation": EncoderPropagationConfig(key_steps=[0, 3], parallel=False, noise_injection=None),
    "branch_cache": BranchCacheConfig(interval=3),
    "clockwork": ClockworkConfig(clock=3),
    "block_skip": BlockSkipConfig([SkipWindow("up_blocks.0", 1, 6)]),
}


def _reference(kind, pipe):
    unet = pipe.unet
    if kind == "encoder_propagation":
        return reference.reuse_encoder(unet, {0, 3})
    if kind == "block_skip":
        return reference.reuse_outputs(unet, ["up_blocks.0"], lambda s: not 1 <= s < 6)
    return reference.reuse_outputs(unet, deep_names(unet, 1), lambda s: s % 3 == 0)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _float64(pipe, kw):
    pipe.to(torch.float64)
    return pipe, {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kw.items()}


@pytest.mark.parametrize(
    "name",
    [
        "sd",
        "sd_img2img",
        "sd_img2img_dpm",
        "sdxl_inpaint",
        "sdxl_refiner",
        "controlnet",
        "sag",
        "panorama",
        "ip_adapter",
        "pag",
        "pag_no_cfg",
        "text2video",
        "animatediff",
        "animatediff_ip_adapter",
        "animatediff_sdxl",
    ],
)
def test_parallel_decoding_equals_sequential_in_float64(name):
    pipe, kw = _float64(*build(name))
    decoder_calls = []
    hook = pipe.unet.up_blocks[0].register_forward_hook(lambda m, a, o: decoder_calls.append(o.shape[0]))
    out = {}
    with torch.no_grad():
        for parallel in (False, True):
            decoder_calls.clear()
            with unetlab.encoder_propagation(pipe, key_steps="uniform:3", parallel=parallel):
                out[parallel] = run(pipe, kw)
            out[parallel, "calls"] = len(decoder_calls)
    hook.remove()
    assert out[True, "calls"] < out[False, "calls"]  # several steps were decoded as one batch
    rel = ((out[True] - out[False]).abs().max() / out[False].abs().max()).item()
    assert rel <= 1e-10  # float64: batch-size reordering noise is ~1e-16 per operation


def test_parallel_decoding_under_an_unknown_processor_falls_back_to_sequential_with_one_warning():
    from diffusers.models.attention_processor import AttnProcessor2_0

    class MixingProcessor(AttnProcessor2_0):
        """Stands for any processor unetlab does not know to keep batch elements apart."""

    pipe, kw = build("sd")
    pipe.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.set_processor(MixingProcessor())
    with torch.no_grad():
        with unetlab.encoder_propagation(pipe, key_steps="uniform:3", parallel=False):
            sequential = run(pipe, kw)
        with unetlab.encoder_propagation(pipe, key_steps="uniform:3", parallel=True):
            with pytest.warns(
                UserWarning,
                match=r"^encoder_propagation: parallel decoding falls back to sequential: "
                r"MixingProcessor",
            ):
                parallel = run(pipe, kw)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                run(pipe, kw)  # once per handle
    assert torch.equal(parallel, sequential)


@pytest.mark.parametrize("second", ["branch_cache", "clockwork"])
def test_stacks_remove_in_either_order(second):
    pipe, kw = build("sd")
    with torch.no_grad():
        plain = run(pipe, kw)
        with apply(pipe, ACTIVE[second]):
            second_alone = run(pipe, kw)
        for order in ("applied", "reversed"):
            a = unetlab.encoder_propagation(pipe, key_steps="uniform:2")  # with prior noise injection
            b = apply(pipe, ACTIVE[second])
            stacked = run(pipe, kw)
            first, last = (a, b) if order == "applied" else (b, a)
            first.remove()
            left = run(pipe, kw)
            last.remove()
            assert untouched(pipe), order
            assert torch.equal(run(pipe, kw), plain), order
            if order == "applied":  # the handle left runs as it does alone (its patch is not skipped)
                assert torch.equal(left, second_alone)
            else:
                with unetlab.encoder_propagation(pipe, key_steps="uniform:2"):
                    assert torch.equal(left, run(pipe, kw))
    assert not torch.equal(stacked, plain)


CONFIGS = {**ACTIVE, "encoder_propagation": EncoderPropagationConfig(key_steps=[0, 3], parallel=True)}


@pytest.mark.parametrize("first,second", list(itertools.permutations(CONFIGS, 2)))
def test_only_documented_stacks_are_accepted(first, second):
    pipe, kw = build("sd")
    a = apply(pipe, CONFIGS[first])
    try:
        if (first, second) in COMPOSE:
            apply(pipe, CONFIGS[second]).remove()
        else:
            with pytest.raises(RuntimeError, match=f"^{second}: ") as e:
                apply(pipe, CONFIGS[second])
            assert "\n" not in str(e.value)
    finally:
        a.remove()
    assert untouched(pipe)


@pytest.mark.parametrize("kind", list(ACTIVE))
def test_a_replaced_scheduler_is_followed(kind):
    pipe, kw = build("sd")
    euler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad(), _quiet():
        original = pipe.scheduler
        h = apply(pipe, ACTIVE[kind])
        pipe.scheduler = euler
        swapped = [run(pipe, kw), run(pipe, kw)]
        h.remove()
        with apply(pipe, ACTIVE[kind]):  # applied to the new scheduler from the start
            expected = run(pipe, kw)
        plain = run(pipe, kw)
    assert torch.equal(swapped[0], expected) and torch.equal(swapped[1], expected)
    assert not torch.equal(expected, plain) and untouched(pipe)
    assert not {"step", "set_timesteps", "_unetlab_step"} & set(original.__dict__)


def _replace_prompt(pipe, step, timestep, kwargs):
    if step == 1:
        return {"prompt_embeds": kwargs["prompt_embeds"] * 0.5}
    return {}


@pytest.mark.parametrize("change", ["cfg_cutoff", "new_prompt"])
@pytest.mark.parametrize("kind", list(ACTIVE))
def test_a_batch_or_prompt_change_mid_call_runs_full(kind, change):
    pipe, kw = build("sd")
    callback = (
        dict(callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.5))
        if change == "cfg_cutoff"
        else dict(callback_on_step_end=_replace_prompt, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    )
    with torch.no_grad(), _quiet():
        with apply(pipe, ACTIVE[kind]) as h:
            out = run(pipe, kw, **callback)
            calls = list(h.calls)
        with _reference(kind, pipe):
            ref = run(pipe, kw, **callback)
        plain = run(pipe, kw, **callback)
    changed_at = 4 if change == "cfg_cutoff" else 2  # the first UNet call that sees the new batch or prompt
    assert calls[changed_at] == (changed_at, True)
    assert torch.equal(out, ref) and not torch.equal(out, plain)


def test_a_compiled_unet_with_fullgraph_takes_a_stack():
    """fullgraph=True: the handles' decisions stay outside the graphs, so no graph break is needed; removing the
    first handle leaves the compiled wrapper routed for the second."""
    pipe, kw = build("sd_compiled")
    pipe.unet = torch.compile(pipe.unet._orig_mod, backend="eager", fullgraph=True)
    with torch.no_grad():
        plain = run(pipe, kw)
        a = apply(pipe, ACTIVE["encoder_propagation"])
        b = apply(pipe, ACTIVE["branch_cache"])
        stacked = run(pipe, kw)
        a.remove()
        assert untouched(pipe) is False and "_unetlab_eager_entry" in pipe.unet.__dict__
        b.remove()
        assert untouched(pipe)
        assert torch.equal(run(pipe, kw), plain)
        with uncompiled(pipe), apply(pipe, ACTIVE["encoder_propagation"]), apply(pipe, ACTIVE["branch_cache"]):
            eager = run(pipe, kw)
    assert torch.equal(stacked, eager) and not torch.equal(stacked, plain)


def test_a_unet_compiled_after_applying_runs_the_patches():
    pipe, kw = build("sd_compiled")
    wrapper = pipe.unet
    with torch.no_grad():
        plain = run(pipe, kw)
        pipe.unet = wrapper._orig_mod
        with apply(pipe, ACTIVE["block_skip"]) as h:
            pipe.unet = wrapper
            graphs = compiled_graphs()
            out = run(pipe, kw)
            assert compiled_graphs() > graphs and not all(full for _, full in h.calls)
        assert torch.equal(run(pipe, kw), plain) and untouched(pipe)
        with uncompiled(pipe), _reference("block_skip", pipe):
            ref = run(pipe, kw)
    assert torch.equal(out, ref) and not torch.equal(out, plain)


@pytest.mark.parametrize("kind", ["branch_cache", "clockwork"])
def test_a_compiled_unet_forecasts_without_compiling_again_at_each_step(kind):
    """reuse="taylor1": the step numbers (forecast weights, difference spacings) stay outside the traced deep path,
    so the graphs are one per state (a cheap step; a first full step; a full step with its first difference:
    order + 2), not one per step, and the outputs are the eager forecast's."""
    config = replace(ACTIVE[kind], reuse="taylor1")
    pipe, kw = build("sd_compiled")
    with torch.no_grad():
        run(pipe, kw)
        added = []
        for steps in (6, 12):
            graphs = compiled_graphs()
            with apply(pipe, config):
                out = run(pipe, kw | {"num_inference_steps": steps})
            added.append(compiled_graphs() - graphs)
        with uncompiled(pipe):
            with apply(pipe, config):
                eager = run(pipe, kw | {"num_inference_steps": 12})
            with apply(pipe, ACTIVE[kind]):
                copied = run(pipe, kw | {"num_inference_steps": 12})
    assert added[0] == added[1] <= 3, added
    assert torch.equal(out, eager) and not torch.equal(out, copied)


def test_lcm_with_a_named_set_that_skips_nothing_warns_once():
    pipe, kw = build("lcm")
    with torch.no_grad(), unetlab.encoder_propagation(pipe, key_steps="paper"):
        with pytest.warns(UserWarning, match="nothing is skipped"):
            run(pipe, kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run(pipe, kw)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_configs_save_load_and_apply(kind, tmp_path):
    cfg = CONFIGS[kind]
    path = cfg.save(tmp_path / f"{kind}.json")
    loaded = load_config(path)
    assert loaded == cfg and type(loaded) is type(cfg)
    pipe, _ = build("sd")
    with apply(pipe, loaded) as h:
        assert h.config == cfg
    with pytest.raises(ValueError, match="^config: unknown field"):
        load_config({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="^config: kind"):
        load_config({"kind": "unetlab.nothing"})


def test_a_replaced_scheduler_is_followed_with_a_controlnet():
    pipe, kw = build("controlnet")
    cfg = ACTIVE["encoder_propagation"]
    with torch.no_grad():
        with apply(pipe, cfg):
            run(pipe, kw)
            pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
            swapped = run(pipe, kw)
        with apply(pipe, cfg):
            expected = run(pipe, kw)
    assert torch.equal(swapped, expected) and untouched(pipe)


def test_a_deep_copy_of_the_scheduler_is_independent_of_the_applied_handle():
    import copy

    pipe, kw = build("sd")
    with torch.no_grad(), apply(pipe, ACTIVE["branch_cache"]) as h:
        expected = run(pipe, kw)
        twin = copy.deepcopy(pipe.scheduler)  # e.g. text-to-video-zero steps a copy of the scheduler
        twin.set_timesteps(4)
        twin.step(torch.zeros(1, 4, 8, 8), twin.timesteps[0], torch.zeros(1, 4, 8, 8))
        assert pipe.scheduler.__dict__["_unetlab_step"] == len(h.calls)  # the original's count is untouched
        assert torch.equal(run(pipe, kw), expected)
    assert untouched(pipe)


def test_anchor_attention_takes_part_in_the_stacking_table():
    from unetlab.accel.anchor_attention import anchor_attention

    pipe, _ = build("sd")
    with anchor_attention(pipe, count=2):
        for kind in ("encoder_propagation", "branch_cache", "block_skip"):
            with pytest.raises(RuntimeError, match=f"^{kind}: ") as e:
                apply(pipe, CONFIGS[kind])
            assert "\n" not in str(e.value)
    with apply(pipe, ACTIVE["block_skip"]):
        with pytest.raises(RuntimeError, match="^anchor_attention: block_skip is already applied"):
            anchor_attention(pipe, count=2)
    with apply(pipe, ACTIVE["clockwork"]), anchor_attention(pipe, count=2):
        pass
    assert untouched(pipe)


def test_anchor_attention_is_a_handle_with_a_json_config(tmp_path):
    from unetlab.accel import AnchorAttentionConfig
    from unetlab.accel.handle import Handle

    cfg = AnchorAttentionConfig(anchors=[0, 2], own_kv=True)
    loaded = load_config(cfg.save(tmp_path / "aa.json"))
    assert loaded == cfg and loaded.anchors == (0, 2)
    with pytest.raises(ValueError, match="^config: unknown field"):
        load_config({**cfg.to_dict(), "bogus": 1})
    pipe, kw = build("sd")
    with torch.no_grad():
        plain = run(pipe, kw)
        for order in ("applied", "reversed"):
            a = apply(pipe, ACTIVE["clockwork"])
            b = apply(pipe, loaded)
            assert isinstance(b, Handle) and b.config == cfg
            with pytest.raises(RuntimeError, match="^anchor_attention: already applied"):
                apply(pipe, cfg)
            with b.phase_of("anchors", 1):
                run(pipe, kw)
            for h in (a, b) if order == "applied" else (b, a):
                h.remove()
                h.remove()
            assert untouched(pipe), order
            assert torch.equal(run(pipe, kw), plain), order
