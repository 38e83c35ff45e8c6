"""Guidance reuse: exact at interval 1, equal to a hand-written reference on every guidance layout, T-GATE's
guidance drop, refusals, configs, and stacking under the documented order (equal to both written by hand)."""

import inspect

import diffusers as d
import pytest
import torch
from diffusers.callbacks import SDCFGCutoffCallback

import unetlab
from helpers.guidance_reference import deep_by_hand, encoder_by_hand, guidance_by_hand
from unetlab.accel import GuidanceReuseConfig, apply, load_config
from unetlab.testing import tiny_controlnet, tiny_sd_pipeline, tiny_shapes_pipeline, tiny_unet

STEPS = 6
DDIM = dict(
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
)
DEEP = ["down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1"]  # branch 0 of tiny "sd"


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _embeds(*shape, seed):
    return torch.randn(*shape, generator=_g(seed))


def _vae():
    torch.manual_seed(0)
    return d.AutoencoderKL(
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=2,
        latent_channels=4,
    )


def _make(cls, **components):
    params = inspect.signature(cls.__init__).parameters
    for name in (
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
        "safety_checker",
        "feature_extractor",
        "image_encoder",
    ):
        if name in params and name not in components:
            components[name] = None
    for flag in ("requires_safety_checker", "add_watermarker", "requires_aesthetics_score"):
        if flag in params:
            components[flag] = False
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _text(**more):
    return (
        dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            height=64,
            width=64,
            output_type="latent",
        )
        | more
    )


def build(name):
    """(pipeline, call kwargs, (chunks, conditional chunk) of its guidance batch)."""
    if name == "sd":
        return tiny_sd_pipeline(), _text(), (2, 1)
    if name == "sdxl":
        pipe = _make(d.StableDiffusionXLPipeline, vae=_vae(), unet=tiny_unet("sdxl"), scheduler=d.DDIMScheduler(**DDIM))
        return (
            pipe,
            _text(pooled_prompt_embeds=_embeds(1, 8, seed=3), negative_pooled_prompt_embeds=_embeds(1, 8, seed=4)),
            (2, 1),
        )
    if name == "instruct_pix2pix":
        pipe = _make(
            d.StableDiffusionInstructPix2PixPipeline,
            vae=_vae(),
            unet=tiny_unet("sd", in_channels=8),
            scheduler=d.DDIMScheduler(**DDIM),
        )
        kw = _text(image=torch.rand(1, 3, 64, 64, generator=_g(5)))
        del kw["height"], kw["width"]
        return pipe, kw, (3, 0)
    if name in ("pag", "pag_no_cfg"):
        pipe = _make(
            d.StableDiffusionPAGPipeline,
            vae=_vae(),
            unet=tiny_unet("sd"),
            scheduler=d.DDIMScheduler(**DDIM),
            pag_applied_layers=["mid", "up"],
        )
        if name == "pag":
            return pipe, _text(pag_scale=2.0), (3, 1)
        return pipe, _text(pag_scale=2.0, guidance_scale=1.0, negative_prompt_embeds=None), (2, 0)
    if name == "controlnet":
        unet = tiny_unet("sd")
        pipe = _make(
            d.StableDiffusionControlNetPipeline,
            vae=_vae(),
            unet=unet,
            controlnet=tiny_controlnet(unet),
            scheduler=d.DDIMScheduler(**DDIM),
        )
        return pipe, _text(image=torch.rand(1, 3, 64, 64, generator=_g(5))), (2, 1)
    if name == "if_stage2":  # no flag either; the noise level is a batched class label
        scheduler = d.DDPMScheduler(variance_type="learned_range", beta_schedule="squaredcos_cap_v2")
        pipe = _make(
            d.IFSuperResolutionPipeline,
            unet=tiny_unet("if_stage2"),
            scheduler=scheduler,
            image_noising_scheduler=d.DDPMScheduler(),
            watermarker=None,
        )
        return (
            pipe,
            dict(
                prompt_embeds=_embeds(1, 5, 12, seed=1),
                negative_prompt_embeds=_embeds(1, 5, 12, seed=2),
                image=torch.rand(1, 3, 8, 8, generator=_g(6)) * 2 - 1,
                noise_level=100,
                height=16,
                width=16,
                output_type="pt",
            ),
            (2, 1),
        )
    if name == "shapes":  # no do_classifier_free_guidance flag: recognised from the batch
        return (
            tiny_shapes_pipeline(),
            dict(
                prompt_embeds=_embeds(1, 12, 16, seed=1),
                guidance_scale=5.0,
                negative_prompt_embeds=_embeds(1, 12, 16, seed=2),
                output_type="latent",
            ),
            (2, 1),
        )
    raise ValueError(name)


def run(pipe, kw, steps=STEPS, **more):
    with torch.no_grad():
        out = pipe(**kw | more, num_inference_steps=steps, generator=_g(0))
    return (out.images if hasattr(out, "images") else out[0]).clone()


def untouched(pipe) -> bool:
    mods = list(pipe.unet.modules())
    return (
        not any("forward" in m.__dict__ or hasattr(m, "_diffusers_hook") for m in mods)
        and "_unetlab_patches" not in pipe.unet.__dict__
        and not {"step", "set_timesteps", "_unetlab_step"} & set(pipe.scheduler.__dict__)
    )


# ------------------------------------------------------------------ exactness, reference, removal
@pytest.mark.parametrize(
    "name", ["sd", "sdxl", "instruct_pix2pix", "pag", "pag_no_cfg", "controlnet", "if_stage2", "shapes"]
)
def test_each_layout_identity_reference_and_removal(name):
    pipe, kw, (chunks, cond) = build(name)
    plain = run(pipe, kw)
    with unetlab.guidance_reuse(pipe, interval=1, stop_after=1.0) as h:
        assert torch.equal(run(pipe, kw), plain)
        assert h.calls == [(s, True) for s in range(STEPS)]
    with unetlab.guidance_reuse(pipe, interval=2) as h:
        out = run(pipe, kw)
        assert h.calls == [(s, s % 2 == 0) for s in range(STEPS)]
    assert untouched(pipe)
    with guidance_by_hand(pipe, chunks, cond, interval=2):
        ref = run(pipe, kw)
    assert torch.equal(out, ref) and not torch.equal(out, plain)
    assert torch.equal(run(pipe, kw), plain)


@pytest.mark.parametrize(
    "reuse,interval,stop_after", [("copy", 3, 0.5), ("taylor1", 2, None), ("taylor2", 2, 0.75), ("taylor1", 3, None)]
)
def test_forecasts_and_the_guidance_drop_equal_the_reference(reuse, interval, stop_after):
    pipe, kw, _ = build("sd")
    steps = 12
    with unetlab.guidance_reuse(pipe, interval=interval, reuse=reuse, stop_after=stop_after) as h:
        out = run(pipe, kw, steps)
        stop = steps if stop_after is None else stop_after * steps
        assert h.calls == [(s, s < stop and s % interval == 0) for s in range(steps)]
    order = {"copy": 0, "taylor1": 1, "taylor2": 2}[reuse]
    with guidance_by_hand(pipe, 2, 1, interval, order, None if stop_after is None else stop_after * steps):
        ref = run(pipe, kw, steps)
    assert torch.equal(out, ref)


def test_cheap_steps_run_the_conditional_rows_and_dropped_guidance_returns_them_for_every_chunk():
    pipe, kw, _ = build("sd")
    rows, outs = [], []
    pre = pipe.unet.conv_in.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    post = pipe.unet.register_forward_hook(lambda m, a, out: outs.append(out[0]))
    with unetlab.guidance_reuse(pipe, interval=3, stop_after=0.5):
        run(pipe, kw)
    pre.remove(), post.remove()
    assert rows == [2, 1, 1, 1, 1, 1]
    for eps in outs[3:]:  # T-GATE's drop: the pipeline's uncond + w (cond - uncond) is cond
        uncond, cond = eps.chunk(2)
        assert torch.equal(uncond, cond)
    uncond, cond = outs[1].chunk(2)
    assert not torch.equal(uncond, cond)


def test_a_cfg_cutoff_mid_call_runs_the_rest_as_it_is():
    pipe, kw, _ = build("sd")
    cutoff = dict(
        callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.5),
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
    )
    with unetlab.guidance_reuse(pipe, interval=2) as h:
        out = run(pipe, kw, **cutoff)
        assert h.calls == [(0, True), (1, False), (2, True), (3, False), (4, True), (5, True)]  # cut after step 3
    with guidance_by_hand(pipe, 2, 1, interval=2):
        ref = run(pipe, kw, **cutoff)
    assert torch.equal(out, ref)


class TwoViews:
    """A pipeline calling its UNet twice per step, once per view, each on [uncond | cond] copies of the view."""

    def __init__(self, unet, scheduler):
        self.unet, self.scheduler = unet, scheduler

    @property
    def do_classifier_free_guidance(self):
        return True

    def __call__(self, num_inference_steps, generator):
        self.scheduler.set_timesteps(num_inference_steps)
        x = torch.randn(1, 4, 8, 16, generator=generator)
        embeds = torch.cat([_embeds(1, 5, 16, seed=2), _embeds(1, 5, 16, seed=1)])
        for t in self.scheduler.timesteps:
            eps = []
            for view in x.chunk(2, dim=-1):
                u, c = self.unet(torch.cat([view] * 2), t, encoder_hidden_states=embeds).sample.chunk(2)
                eps.append(u + 5.0 * (c - u))
            x = self.scheduler.step(torch.cat(eps, dim=-1), t, x).prev_sample
        return (x,)


def test_state_is_kept_per_call_slot_and_several_calls_per_step_are_refused_when_stacked():
    pipe = TwoViews(tiny_unet("sd"), d.DDIMScheduler(**DDIM))
    with unetlab.guidance_reuse(pipe, interval=2) as h:
        out = run(pipe, {}, 4)
        assert h.calls == [(s, s % 2 == 0) for s in range(4) for _view in range(2)]
    with guidance_by_hand(pipe, 2, 1, interval=2, per_step=2):
        ref = run(pipe, {}, 4)
    assert torch.equal(out, ref)
    with (
        unetlab.encoder_propagation(pipe, key_steps=[0, 2], parallel=False, noise_injection=None),
        unetlab.guidance_reuse(pipe),
        pytest.raises(RuntimeError, match="^guidance_reuse: TwoViews calls the UNet more than once per step") as e,
    ):
        run(pipe, {}, 4)
    assert "\n" not in str(e.value) and untouched(pipe)
    # on branch caching each view's call is a slot of both, its cheap steps on its conditional rows
    with unetlab.branch_cache(pipe, interval=2, branch=0) as bc, unetlab.guidance_reuse(pipe, interval=3):
        out = run(pipe, {}, 5)
        assert bc.calls == [(s, s % 2 == 0) for s in range(5) for _view in range(2)]
    with guidance_by_hand(pipe, 2, 1, interval=3, per_step=2, also_full=lambda s: s % 2 == 0) as memo:
        hooks = deep_by_hand(pipe.unet, DEEP, 2, memo)
        ref = run(pipe, {}, 5)
    for hook in hooks:
        hook.remove()
    assert torch.equal(out, ref) and untouched(pipe)


# ------------------------------------------------------------------ refusals, configs
@pytest.mark.parametrize(
    "name,more",
    [
        ("sd", dict(guidance_scale=1.0, negative_prompt_embeds=None)),
        ("shapes", dict(guidance_scale=1.0)),
        ("pag", dict(guidance_scale=1.0, pag_scale=0.0, negative_prompt_embeds=None)),
    ],
)
def test_a_call_without_guidance_is_refused_at_its_first_unet_call(name, more):
    pipe, kw, _ = build(name)
    ran = []
    hook = pipe.unet.conv_in.register_forward_pre_hook(lambda m, a: ran.append(1))
    with unetlab.guidance_reuse(pipe):
        with pytest.raises(ValueError, match="^guidance_reuse: this .* call has no guidance batch") as e:
            run(pipe, kw, **more)
        assert "\n" not in str(e.value) and not ran
        guided = run(pipe, kw)  # the handle works for the next, guided call
    hook.remove()
    with unetlab.guidance_reuse(pipe):
        assert torch.equal(run(pipe, kw), guided)


def test_what_cannot_apply_is_refused_when_applied():
    pipe, _, _ = build("sd")
    for target, err in [
        (pipe.unet, "^target: guidance_reuse needs the pipeline"),
        (
            d.DDPMPipeline(unet=tiny_unet("ddpm"), scheduler=d.DDPMScheduler()),
            "^target: UNet2DModel takes no conditioning",
        ),
        *(
            (
                _make(cls, vae=_vae(), unet=tiny_unet("sd"), scheduler=d.DDIMScheduler(**DDIM)),
                f"^target: {cls.__name__}",
            )
            for cls in (d.StableDiffusionSAGPipeline, d.StableDiffusionPanoramaPipeline)
        ),
    ]:
        with pytest.raises(TypeError, match=err) as e:
            unetlab.guidance_reuse(target)
        assert "\n" not in str(e.value)
        assert "_unetlab_patches" not in getattr(target, "unet", target).__dict__
    pag, _, _ = build("pag")
    with unetlab.branch_cache(pag), pytest.raises(RuntimeError, match="^guidance_reuse: branch_cache is applied"):
        unetlab.guidance_reuse(pag)
    with unetlab.guidance_reuse(pipe):
        with pytest.raises(RuntimeError, match="^branch_cache: apply it before guidance_reuse"):
            unetlab.branch_cache(pipe)
        with pytest.raises(RuntimeError, match="^block_skip: guidance_reuse is already applied"):
            unetlab.block_skip(pipe, [])
        with pytest.raises(RuntimeError, match="^guidance_reuse: already applied"):
            unetlab.guidance_reuse(pipe)
    with unetlab.block_skip(pipe, []):
        with pytest.raises(RuntimeError, match="^guidance_reuse: block_skip .* stacks only after"):
            unetlab.guidance_reuse(pipe)
    assert untouched(pipe) and untouched(pag)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(interval=0), "interval"),
        (dict(interval=1.5), "interval"),
        (dict(interval=True), "interval"),
        (dict(reuse="taylor3"), "reuse"),
        (dict(reuse=None), "reuse"),
        (dict(stop_after=0), "stop_after"),
        (dict(stop_after=1.5), "stop_after"),
        (dict(stop_after=-0.5), "stop_after"),
        (dict(stop_after=True), "stop_after"),
        (dict(stop_after="0.5"), "stop_after"),
        (dict(stop_after=float("nan")), "stop_after"),
    ],
)
def test_invalid_configs_raise_one_line_errors(kwargs, field):
    pipe, _, _ = build("sd")
    with pytest.raises(ValueError) as e:
        unetlab.guidance_reuse(pipe, **kwargs)
    assert str(e.value).startswith(f"{field}:") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=f"^{field}:"):
        GuidanceReuseConfig.from_dict({**GuidanceReuseConfig().to_dict(), **kwargs})
    assert untouched(pipe)


def test_config_round_trips_through_json(tmp_path):
    cfg = GuidanceReuseConfig(interval=3, reuse="taylor1", stop_after=0.6)
    loaded = load_config(cfg.save(tmp_path / "gr.json"))
    assert loaded == cfg and loaded.to_dict()["kind"] == "unetlab.guidance_reuse"
    assert load_config(GuidanceReuseConfig().to_dict()) == GuidanceReuseConfig(interval=2, reuse="copy")
    with pytest.raises(ValueError, match="^config: unknown field"):
        load_config({**cfg.to_dict(), "gate": 3})
    pipe, kw, _ = build("sd")
    with apply(pipe, loaded) as h:
        assert h.config == cfg
        out = run(pipe, kw)
    with unetlab.guidance_reuse(pipe, interval=3, reuse="taylor1", stop_after=0.6):
        assert torch.equal(run(pipe, kw), out)


# ------------------------------------------------------------------ stacking
@pytest.mark.parametrize("under", ["branch_cache", "encoder_propagation"])
def test_stacked_equals_both_written_by_hand(under):
    pipe, kw, _ = build("sd")
    if under == "branch_cache":
        first = unetlab.branch_cache(pipe, interval=3, branch=0)
    else:
        first = unetlab.encoder_propagation(pipe, key_steps=[0, 3], parallel=False, noise_injection=None)
    with first, unetlab.guidance_reuse(pipe, interval=2):
        out = run(pipe, kw)
        if under == "branch_cache":
            # one call per step: the whole guidance batch at guidance reuse's full steps and branch caching's (3),
            # the conditional rows alone at the others, on the deep features stored for the whole batch
            assert first.calls == [(0, True), (1, False), (2, False), (3, True), (4, False), (5, False)]
        else:
            # a full guidance step is a call per chunk underneath (conditional first), a cheap one the conditional
            assert first.calls == [
                (0, True),
                (0, True),
                (1, False),
                (2, False),
                (2, False),
                (3, True),
                (4, False),
                (4, False),
                (5, False),
            ]
    assert untouched(pipe)
    view = under == "branch_cache"
    with guidance_by_hand(
        pipe, 2, 1, interval=2, split=not view, also_full=(lambda s: s % 3 == 0) if view else None
    ) as memo:
        hooks = (
            deep_by_hand(pipe.unet, DEEP, 3, memo)
            if under == "branch_cache"
            else encoder_by_hand(pipe.unet, {0, 3}, memo)
        )
        ref = run(pipe, kw)
    for hook in hooks:
        hook.remove()
    assert torch.equal(out, ref)


def test_a_forecasting_branch_cache_under_it_forecasts_the_whole_batch_and_cuts_the_conditional_rows():
    pipe, kw, _ = build("sd")
    with (
        unetlab.branch_cache(pipe, interval=2, branch=0, reuse="taylor1") as bc,
        unetlab.guidance_reuse(pipe, interval=3, reuse="taylor1"),
    ):
        out = run(pipe, kw, 8)
        assert bc.calls == [(s, s % 2 == 0) for s in range(8)]
    with guidance_by_hand(pipe, 2, 1, interval=3, order=1, also_full=lambda s: s % 2 == 0) as memo:
        hooks = deep_by_hand(pipe.unet, DEEP, 2, memo, order=1)
        ref = run(pipe, kw, 8)
    for hook in hooks:
        hook.remove()
    assert torch.equal(out, ref) and untouched(pipe)


def test_clockwork_stack_computes_the_branch_cache_stack():
    pipe, kw, _ = build("sd")
    outs = []
    for first in (lambda: unetlab.clockwork(pipe, clock=2, level=1), lambda: unetlab.branch_cache(pipe, interval=2)):
        with first(), unetlab.guidance_reuse(pipe, interval=3, reuse="taylor1"):
            outs.append(run(pipe, kw))
    assert torch.equal(*outs)


def test_stacks_remove_in_either_order():
    pipe, kw, _ = build("sd")
    plain = run(pipe, kw)
    alone = {}
    for kind, make in (
        ("bc", lambda: unetlab.branch_cache(pipe, interval=2)),
        ("gr", lambda: unetlab.guidance_reuse(pipe, interval=2)),
    ):
        with make():
            alone[kind] = run(pipe, kw)
    for order in ("applied", "reversed"):
        bc = unetlab.branch_cache(pipe, interval=2)
        gr = unetlab.guidance_reuse(pipe, interval=2)
        stacked = run(pipe, kw)
        first, last, left = (bc, gr, "gr") if order == "applied" else (gr, bc, "bc")
        first.remove()
        assert torch.equal(run(pipe, kw), alone[left]), order  # alone again: no longer split into chunk calls
        last.remove()
        assert untouched(pipe) and torch.equal(run(pipe, kw), plain), order
    assert not torch.equal(stacked, alone["bc"]) and not torch.equal(stacked, alone["gr"])


# ------------------------------------------------------------------ the bench and the tuner
def test_the_bench_has_its_rows_and_the_tuner_searches_it():
    from unetlab.accel import BranchCacheConfig
    from unetlab.bench import space
    from unetlab.bench.rows import default_rows
    from unetlab.recipes import Recipe, accelerate

    pipe, kw, _ = build("sd")
    rows = {r.name: r for r in default_rows(pipe.unet, 50, quick=True)}
    for name, kinds in (
        ("guidance reuse N=2", ["guidance_reuse"]),
        ("branch cache N=2 B=0 + guidance reuse N=2", ["branch_cache", "guidance_reuse"]),
    ):
        recipe = rows[name].recipe
        assert all(getattr(c, "reuse", "copy") == "copy" for c in recipe.accelerators)
        with accelerate(pipe, Recipe(STEPS, recipe.scheduler, recipe.accelerators)) as h:
            assert [a.kind for a in h.handles] == kinds
            run(pipe, kw)
            assert any(not full for _, full in h.handles[-1].calls)
    assert untouched(pipe)

    assert space.guided(pipe.unet, 5.0) and space.guided(pipe.unet, None)
    assert not space.guided(pipe.unet, 1.0) and not space.guided(tiny_unet("ddpm"), 5.0)
    gr = [c for c in space.singles(pipe.unet, 10, {}, [], guidance=True) if c.family == "guidance-reuse"]
    assert [c.accelerators for c in gr if c.steps == 10] == [(g,) for g in space.GUIDANCE]
    assert {c.steps for c in gr} == set(space.step_counts(10)) and gr[0].name == "10 steps + GR N=2"
    assert not any(c.family == "guidance-reuse" for c in space.singles(pipe.unet, 10, {}, []))
    assert [c.accelerators[0].reuse for c in space.forecast_variants(gr[:1])] == ["taylor1", "taylor2"]
    bc = space.Candidate(10, (BranchCacheConfig(interval=2),), "branch-cache")
    combos = space.combinations([bc, gr[0]])
    assert [c.accelerators for c in combos] == [(bc.accelerators[0], gr[0].accelerators[0])]
    recipe = Recipe(10, "DDIMScheduler", combos[0].accelerators)
    with accelerate(pipe, recipe):
        stacked = run(pipe, kw, 10)
    with unetlab.branch_cache(pipe, interval=2), unetlab.guidance_reuse(pipe, interval=2):
        assert torch.equal(run(pipe, kw, 10), stacked)
