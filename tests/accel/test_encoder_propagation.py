"""Encoder propagation through `pipe(...)`: exactness, the reference method, pipelines, state and errors."""

import importlib

import pytest
import torch

import unetlab
from helpers.ep_pipelines import build, call, in_float64, reference
from unetlab.schedules import KeyStepsError
from unetlab.testing import tiny_unet

ep_module = importlib.import_module("unetlab.accel.encoder_propagation")  # unetlab.accel re-exports a function

KINDS = ("sd", "sdxl", "controlnet", "if_stage1", "if_stage2", "ddpm")
KEYS = [0, 1, 3, 6]
STEPS = 8


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = build(kind, tmp_path_factory.mktemp(kind))
        return cache[kind]

    return get


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("kind", KINDS)
def test_all_key_without_injection_is_the_unpatched_pipeline_bit_for_bit(pipes, kind):
    pipe, kw = pipes(kind)
    base = call(pipe, kw, STEPS)
    for parallel in (False, True):
        with unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None, parallel=parallel):
            assert torch.equal(call(pipe, kw, STEPS), base)
    assert torch.equal(call(pipe, kw, STEPS), base)  # removed
    h = unetlab.encoder_propagation(pipe, key_steps=KEYS)
    assert not torch.equal(call(pipe, kw, STEPS), base)
    h.remove()
    assert torch.equal(call(pipe, kw, STEPS), base)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_reference_method(pipes, kind):
    pipe, kw = pipes(kind)
    with reference(pipe, KEYS):
        ref = call(pipe, kw, STEPS)
    with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=False):
        seq = call(pipe, kw, STEPS)
    assert torch.equal(seq, ref)  # the same operations in the same order
    assert _rel(ref, call(pipe, kw, STEPS)) > 1e-4  # and the method does change the output
    with in_float64(pipe, kw) as kw64:
        with reference(pipe, KEYS):
            ref64 = call(pipe, kw64, STEPS)
        with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=True):
            par64 = call(pipe, kw64, STEPS)
    assert _rel(par64, ref64) < 1e-10


def test_reference_loop_without_the_pipeline_sd(pipes):
    """An explicit classifier-free-guidance DDIM loop with the method written out equals the handle in pipe(...)."""
    pipe, kw = pipes("sd")
    unet, scheduler = pipe.unet, pipe.scheduler
    alpha, guidance = 0.003, 7.5
    with in_float64(pipe, kw) as kw64, torch.no_grad():
        with unetlab.encoder_propagation(pipe, key_steps=KEYS):
            out = call(pipe, kw64, STEPS, guidance_scale=guidance)
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        z = z * scheduler.init_noise_sigma
        text = torch.cat([kw64["negative_prompt_embeds"], kw64["prompt_embeds"]])
        scheduler.set_timesteps(STEPS)
        z_T = z.clone()
        for i, t in enumerate(scheduler.timesteps):
            x = scheduler.scale_model_input(torch.cat([z] * 2), t)
            if i in KEYS:
                state = unetlab.encode(unet, x, t, encoder_hidden_states=text)
            eps_uncond, eps_text = unetlab.decode(unet, state, [t]).chunk(2)
            eps = eps_uncond + guidance * (eps_text - eps_uncond)
            if t < 500:
                z = z + alpha * z_T
            z = scheduler.step(eps, t, z).prev_sample
    assert _rel(out, z) < 1e-10


def test_reference_loop_without_the_pipeline_ddpm(pipes):
    pipe, kw = pipes("ddpm")
    unet, scheduler = pipe.unet, pipe.scheduler
    with in_float64(pipe, kw) as kw64, torch.no_grad():
        with unetlab.encoder_propagation(pipe, key_steps=KEYS, noise_injection=None):
            out = call(pipe, dict(kw64, output_type="pt"), STEPS)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
        scheduler.set_timesteps(STEPS)
        for i, t in enumerate(scheduler.timesteps):
            if i in KEYS:
                state = unetlab.encode(unet, x, t)
            x = scheduler.step(unetlab.decode(unet, state, [t]), t, x, generator=g).prev_sample
    assert _rel(out, (x / 2 + 0.5).clamp(0, 1)) < 1e-10


@pytest.mark.parametrize("more", [dict(guidance_scale=1.0), dict(num_images_per_prompt=2)])
def test_guidance_off_and_several_images_per_prompt(pipes, more):
    pipe, kw = pipes("sd")
    with in_float64(pipe, kw) as kw64:
        with reference(pipe, KEYS):
            ref = call(pipe, kw64, STEPS, **more)
        with unetlab.encoder_propagation(pipe, key_steps=KEYS):
            out = call(pipe, kw64, STEPS, **more)
    assert out.shape[0] == more.get("num_images_per_prompt", 1)
    assert _rel(out, ref) < 1e-10


def test_controlnet_runs_only_at_key_steps(pipes):
    pipe, kw = pipes("controlnet")
    runs = []
    hook = pipe.controlnet.controlnet_cond_embedding.register_forward_hook(lambda *a: runs.append(1))
    try:
        with unetlab.encoder_propagation(pipe, key_steps=KEYS):
            call(pipe, kw, STEPS)
        assert len(runs) == len(KEYS)
        call(pipe, kw, STEPS)
        assert len(runs) == len(KEYS) + STEPS  # removed: every step again
    finally:
        hook.remove()


def test_parallel_decodes_up_to_the_next_key_step_and_respects_max_parallel(pipes, monkeypatch):
    pipe, kw = pipes("sd")
    batches = []
    real = ep_module.decode
    monkeypatch.setattr(ep_module, "decode", lambda u, s, ts: (batches.append(len(ts)), real(u, s, ts))[1])
    with in_float64(pipe, kw) as kw64:
        with unetlab.encoder_propagation(pipe, key_steps=KEYS):
            full = call(pipe, kw64, STEPS)
        assert batches == [1, 2, 3, 2]  # keys 0, 1, 3, 6 of 8 steps
        batches.clear()
        with unetlab.encoder_propagation(pipe, key_steps=KEYS, max_parallel=2):
            capped = call(pipe, kw64, STEPS)
    assert batches == [1, 2, 2, 1, 2]
    assert _rel(capped, full) < 1e-10


def test_prior_noise_injection(pipes):
    pipe, kw = pipes("sd")
    with unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None):
        plain = call(pipe, kw, STEPS)
    with unetlab.encoder_propagation(pipe, key_steps="all", injection_threshold=0):
        below_zero = call(pipe, kw, STEPS)  # no timestep is below 0: nothing injected
    with unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=0.05):
        injected = call(pipe, kw, STEPS)
    with reference(pipe, range(STEPS), alpha=0.05):
        ref = call(pipe, kw, STEPS)
    assert torch.equal(below_zero, plain)
    assert torch.equal(injected, ref) and not torch.equal(injected, plain)


def test_state_is_reset_and_an_exception_mid_call_leaves_the_pipeline_usable(pipes):
    pipe, kw = pipes("sd")

    def explode(p, i, t, kwargs):
        if i == 4:
            raise KeyboardInterrupt
        return kwargs

    with unetlab.encoder_propagation(pipe, key_steps=KEYS) as h:
        first = call(pipe, kw, STEPS)
        with pytest.raises(KeyboardInterrupt):
            call(pipe, kw, STEPS, callback_on_step_end=explode)
        assert torch.equal(call(pipe, kw, STEPS), first)
        assert not torch.equal(call(pipe, kw, 7), first)  # another step count works in the same handle
        with pytest.raises(KeyStepsError, match="out of range for a call with 4 steps"):
            call(pipe, kw, 4)
        assert torch.equal(call(pipe, kw, STEPS), first)
    assert h._states == {} and h._ready == {}


def test_two_pipelines_at_once_do_not_interfere(pipes, tmp_path):
    a, kw = pipes("sd")
    b, _ = build("sd", tmp_path)
    b.unet = tiny_unet("sd", seed=7)
    with unetlab.encoder_propagation(a, key_steps=KEYS):
        alone_a = call(a, kw, STEPS)
    with unetlab.encoder_propagation(b, key_steps=[0, 2]):
        alone_b = call(b, kw, 6)
    inner = []

    def interleave(p, i, t, kwargs):  # run pipeline b to completion in the middle of a's loop
        if i == 2:
            inner.append(call(b, kw, 6))
        return kwargs

    with unetlab.encoder_propagation(a, key_steps=KEYS), unetlab.encoder_propagation(b, key_steps=[0, 2]):
        both_a = call(a, kw, STEPS, callback_on_step_end=interleave)
    assert torch.equal(both_a, alone_a) and torch.equal(inner[0], alone_b)


def test_errors(pipes):
    pipe, kw = pipes("sd")
    with unetlab.encoder_propagation(pipe), pytest.raises(RuntimeError, match="already applied"):
        unetlab.encoder_propagation(pipe)
    with pytest.raises(KeyStepsError, match="sorted"):
        unetlab.encoder_propagation(pipe, key_steps=[0, 3, 2])
    with pytest.raises(KeyStepsError, match="step 0"):
        unetlab.encoder_propagation(pipe, key_steps=[1, 2])
    for bad in (dict(noise_injection=-1.0), dict(max_parallel=0), dict(parallel="yes"), dict(num_inference_steps=5)):
        with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
            unetlab.encoder_propagation(pipe, **bad)
    with pytest.raises(TypeError, match="target"):
        unetlab.encoder_propagation(object())
    original = pipe.scheduler
    with unetlab.encoder_propagation(pipe, key_steps=KEYS):
        expected = call(pipe, kw, STEPS)
        pipe.scheduler = type(original).from_config(original.config)
        try:
            assert torch.equal(call(pipe, kw, STEPS), expected)  # the handle follows the new scheduler
            assert torch.equal(call(pipe, kw, STEPS), expected)
        finally:
            replaced, pipe.scheduler = pipe.scheduler, original
    assert "_unetlab_patches" not in pipe.unet.__dict__  # nothing left claimed
    assert not {"step", "set_timesteps", "_unetlab_step"} & (set(replaced.__dict__) | set(original.__dict__))


def test_bare_unet_sequential_by_call_count():
    unet = tiny_unet("sd")
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 4, 8, 8, generator=g) for _ in range(5)]
    c = torch.randn(2, 5, 16, generator=g)
    ts = [900, 700, 500, 300, 100]
    with torch.no_grad():
        ref, state = [], None
        for i, (x, t) in enumerate(zip(xs, ts)):
            if i in (0, 3):
                state = unetlab.encode(unet, x, t, encoder_hidden_states=c)
            ref.append(unetlab.decode(unet, state, [t]))
        with pytest.raises(ValueError, match="num_inference_steps: required"):
            unetlab.encoder_propagation(unet, key_steps="paper")
        with unetlab.encoder_propagation(unet, key_steps=[0, 3], num_inference_steps=5) as h:
            for _ in range(2):
                outs = [unet(x, t, encoder_hidden_states=c).sample for x, t in zip(xs, ts)]
                assert all(torch.equal(o, r) for o, r in zip(outs, ref))
                with pytest.raises(RuntimeError, match="handle.reset"):
                    unet(xs[0], 900, encoder_hidden_states=c)
                h.reset()
            unet(xs[0], 900, encoder_hidden_states=c)
            half = unet(xs[1][:1], 700, encoder_hidden_states=c[:1]).sample  # a new batch runs full
            assert h.calls[-1] == (1, True)
            assert torch.equal(
                half, unetlab.decode(unet, unetlab.encode(unet, xs[1][:1], 700, encoder_hidden_states=c[:1]), [700])
            )
        assert torch.equal(
            unet(xs[1], 700, encoder_hidden_states=c).sample,
            unetlab.decode(unet, unetlab.encode(unet, xs[1], 700, encoder_hidden_states=c), [700]),
        )


def test_combines_with_branch_caching_only_when_applied_first(pipes):
    pipe, kw = pipes("sd")
    base = call(pipe, kw, STEPS)
    with (
        unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None),
        unetlab.branch_cache(pipe, interval=1) as cache,
    ):
        assert torch.equal(call(pipe, kw, STEPS), base)  # both are identities here
        assert cache.calls == [(s, True) for s in range(STEPS)]  # the branch-cache patch ran at every step
    combined = {}
    for parallel in (True, False):  # parallel decoding turns sequential under branch caching's per-step features
        with (
            unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=parallel),
            unetlab.branch_cache(pipe, interval=2) as cache,
        ):
            combined[parallel] = call(pipe, kw, STEPS)
            assert [full for _, full in cache.calls] == [s % 2 == 0 for s in range(STEPS)]
    assert torch.equal(combined[True], combined[False]) and not torch.equal(combined[True], base)
    with unetlab.branch_cache(pipe, interval=2):
        with pytest.raises(RuntimeError, match=r"^encoder_propagation: apply it before branch_cache") as e:
            unetlab.encoder_propagation(pipe)
        assert "\n" not in str(e.value)
    assert torch.equal(call(pipe, kw, STEPS), base)
