"""Branch caching: exact where it must be, really skips the deep path, and leaves no trace when removed."""

import pytest
import torch
from diffusers import HeunDiscreteScheduler

import unetlab
from unetlab.accel.branch_cache import BranchCacheConfig
from unetlab.testing import tiny_sd_pipeline, tiny_unet
from unetlab.unet import example_inputs
from unetlab.unet.partial import deep_modules, num_up_layers

STEPS = 6


def _embeds(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)


def _run(pipe, guidance=7.0, n=1, steps=STEPS):
    pos, neg = _embeds()
    return pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg if guidance > 1 else None,
        guidance_scale=guidance,
        num_images_per_prompt=n,
        num_inference_steps=steps,
        height=128,
        width=128,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).images


def _untouched(pipe):
    """No hook, instance forward, claim or scheduler patch is left anywhere."""
    mods = list(pipe.unet.modules())
    return (
        not any("forward" in m.__dict__ or hasattr(m, "_diffusers_hook") for m in mods)
        and "_unetlab_patches" not in pipe.unet.__dict__
        and not {"step", "set_timesteps"} & set(pipe.scheduler.__dict__)
    )


@pytest.mark.parametrize("guidance,n", [(7.0, 1), (1.0, 2)])
def test_every_step_full_equals_plain_and_removal_restores(guidance, n):
    pipe = tiny_sd_pipeline()
    base = _run(pipe, guidance, n)
    with unetlab.branch_cache(pipe, interval=1) as h:
        same = _run(pipe, guidance, n)
        assert h.calls == [(i, True) for i in range(STEPS)]
    h = unetlab.branch_cache(pipe, interval=3, branch=1)
    cached = _run(pipe, guidance, n)
    assert h.calls == [(i, i % 3 == 0) for i in range(STEPS)]
    h.remove()
    after = _run(pipe, guidance, n)
    assert torch.equal(same, base) and torch.equal(after, base)
    assert (cached - base).abs().max() > 1e-3  # the cached steps really changed something
    assert _untouched(pipe)


@pytest.mark.parametrize("family", ["sd", "sdxl", "ddpm", "ddpm_skip", "if_stage2"])
def test_partial_unet_with_fresh_cache_equals_full_forward(family):
    unet = tiny_unet(family)
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    n = len(unet.down_blocks)
    for branch in range(n - 1):
        with torch.no_grad():
            ref = unet(x, 321, **cond).sample
            with unetlab.branch_cache(unet, interval=3, branch=branch) as h:
                full = unet(x, 321, **cond).sample
                partial = unet(x, 321, **cond).sample  # deep path reused from the call above
                again = unet(x, 321, **cond).sample
                assert h.calls == [(0, True), (1, False), (2, False)]
                other = unet(x * 0.5, 321, **cond).sample
            assert torch.equal(full, ref) and torch.equal(partial, ref) and torch.equal(again, ref)
            plain_other = unet(x * 0.5, 321, **cond).sample
            assert torch.equal(other, plain_other)  # step 3 is full again


def test_stored_feature_is_the_input_of_the_shallow_up_blocks():
    unet = tiny_unet("sd")
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    seen = []
    hook = unet.up_blocks[1].register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["hidden_states"]), with_kwargs=True
    )
    with torch.no_grad(), unetlab.branch_cache(unet, interval=2, branch=1) as h:
        unet(x, 500, **cond)
        assert torch.equal(h.deep.feature, seen[0])
    hook.remove()


def test_cached_steps_do_not_run_the_deep_path():
    pipe = tiny_sd_pipeline()
    unet = pipe.unet
    counts = {}

    def counter(name):
        return lambda *a: counts.__setitem__(name, counts.get(name, 0) + 1)

    deep = {name for name, _ in deep_modules(unet, 1)}
    hooks = [
        m.resnets[0].register_forward_pre_hook(counter(name))
        for name, m in [
            *((f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)),
            ("mid_block", unet.mid_block),
            *((f"up_blocks.{j}", b) for j, b in enumerate(unet.up_blocks)),
        ]
    ]
    with unetlab.branch_cache(pipe, interval=3, branch=0):
        _run(pipe)
    for h in hooks:
        h.remove()
    assert deep == {"down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1"}
    assert counts == {name: 2 if name in deep else STEPS for name in counts} and len(counts) == 7


def test_bare_unet_counts_calls_and_resets():
    unet = tiny_unet("sd")
    x, cond = example_inputs(unet, 1, seq_len=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), unetlab.branch_cache(unet, interval=2) as h:
        for t in (900, 700, 500):
            unet(x, t, **cond)
        assert h.calls == [(0, True), (1, False), (2, True)]
        unet(torch.cat([x, x]), 300, encoder_hidden_states=torch.cat([cond["encoder_hidden_states"]] * 2))
        assert h.calls[-1] == (3, True)  # a new batch runs full instead of reusing another batch's features
        h.reset()
        unet(torch.cat([x, x]), 300, encoder_hidden_states=torch.cat([cond["encoder_hidden_states"]] * 2))
        assert h.calls == [(0, True)]


@pytest.mark.parametrize(
    "kwargs,arg",
    [
        (dict(interval=0), "interval"),
        (dict(interval=1.5), "interval"),
        (dict(interval=True), "interval"),
        (dict(branch=-1), "branch"),
        (dict(branch="0"), "branch"),
        (dict(branch=2), "branch"),
        (dict(schedule="quadratic"), "schedule"),
        (dict(schedule=[]), "schedule"),
        (dict(schedule=[1, 2]), "schedule"),
        (dict(schedule=[0, 2, 2]), "schedule"),
        (dict(schedule=[0, 3, 1]), "schedule"),
        (dict(schedule=[0, 1.0]), "schedule"),
    ],
)
def test_invalid_configs_raise_one_line_errors(kwargs, arg):
    pipe = tiny_sd_pipeline()
    with pytest.raises(ValueError) as e:
        unetlab.branch_cache(pipe, **kwargs)
    assert str(e.value).startswith(f"{arg}:") and "\n" not in str(e.value)
    assert _untouched(pipe)


def test_explicit_schedule_and_out_of_range():
    pipe = tiny_sd_pipeline()
    base = _run(pipe)
    with unetlab.branch_cache(pipe, schedule=list(range(STEPS))):
        assert torch.equal(_run(pipe), base)
    with unetlab.branch_cache(pipe, schedule=[0, 1, 4]) as h:
        _run(pipe)
        assert [full for _, full in h.calls] == [True, True, False, False, True, False]
        assert h.config == BranchCacheConfig(schedule=(0, 1, 4))
    with unetlab.branch_cache(pipe, schedule=[0, STEPS]):
        with pytest.raises(ValueError, match=f"schedule: full step {STEPS} is out of range"):
            _run(pipe)
    assert _untouched(pipe)


def test_second_application_raises_and_state_resets_per_call():
    pipe = tiny_sd_pipeline()
    with unetlab.branch_cache(pipe, interval=2):
        with pytest.raises(RuntimeError, match="branch_cache: already applied"):
            unetlab.branch_cache(pipe)
        first, second = _run(pipe), _run(pipe)
    assert torch.equal(first, second)
    unetlab.branch_cache(pipe).remove()  # applicable again once removed


def test_heun_steps_follow_the_loop_not_the_timestep_value():
    pipe = tiny_sd_pipeline(scheduler=HeunDiscreteScheduler())
    base = _run(pipe, steps=4)
    n_calls = len(pipe.scheduler.timesteps)
    assert n_calls == 7 and len(set(pipe.scheduler.timesteps.tolist())) < n_calls  # repeated timesteps
    with unetlab.branch_cache(pipe, interval=1):
        assert torch.equal(_run(pipe, steps=4), base)
    with unetlab.branch_cache(pipe, interval=2) as h:
        out = _run(pipe, steps=4)
        assert h.calls == [(i, i % 2 == 0) for i in range(n_calls)]
    assert torch.isfinite(out).all() and (out - base).abs().max() > 1e-4
    assert torch.equal(_run(pipe, steps=4), base)


@pytest.mark.parametrize("family", ["sd", "sdxl", "ddpm", "if_stage2"])
def test_layer_granularity_is_exact_with_a_fresh_cache(family):
    unet = tiny_unet(family)
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = unet(x, 123, **cond).sample
        for branch in range(num_up_layers(unet) - 1):
            with unetlab.branch_cache(unet, interval=2, branch=branch, granularity="layer") as h:
                outs = [unet(x, 123, **cond).sample for _ in range(2)]
                assert h.calls == [(0, True), (1, False)]
            assert torch.equal(outs[0], ref) and torch.equal(outs[1], ref), branch


def test_layer_granularity_runs_only_the_last_layers():
    pipe = tiny_sd_pipeline()
    last = pipe.unet.up_blocks[-1]
    ran = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, name=name: ran.append(name))
        for name, m in [
            ("conv_in", pipe.unet.conv_in),
            ("down0.resnet0", pipe.unet.down_blocks[0].resnets[0].conv1),
            ("up2.resnet0", last.resnets[0].conv1),
            ("up2.resnet1", last.resnets[1].conv1),
            ("up2.attn1", last.attentions[1].proj_in),
        ]
    ]  # children run only when their patched parent does
    with unetlab.branch_cache(pipe, interval=STEPS, branch=0, granularity="layer"):
        _run(pipe)
    for h in hooks:
        h.remove()
    per_step = ["conv_in", "down0.resnet0", "up2.resnet0", "up2.resnet1", "up2.attn1"]
    assert ran == per_step + ["conv_in", "up2.resnet1", "up2.attn1"] * (STEPS - 1)
    # the layer cut at a level boundary computes what the block cut computes
    base = {}
    for granularity, branch in (("block", 0), ("layer", len(last.resnets) - 1)):
        with unetlab.branch_cache(pipe, interval=3, branch=branch, granularity=granularity):
            base[granularity] = _run(pipe)
    assert torch.equal(base["block"], base["layer"])


def test_layer_granularity_refuses_skip_blocks_and_bad_values():
    with pytest.raises(ValueError, match="granularity:"):
        unetlab.branch_cache(tiny_unet("sd"), granularity="resnet")
    with pytest.raises(ValueError, match=r"branch: expected 0 to 4 for this UNet's 6 up layers, got 5"):
        unetlab.branch_cache(tiny_unet("sd"), branch=5, granularity="layer")
    with pytest.raises(ValueError, match="carries a skip image") as e:
        unetlab.branch_cache(tiny_unet("ddpm_skip"), branch=0, granularity="layer")
    assert "\n" not in str(e.value)
