"""Forecasting (`reuse="taylor1"`/`"taylor2"`): the finite-difference math, one full step = copying, the active
method against a plain-hook reference on the unpatched UNet, configs and errors, stacking."""

import contextlib

import pytest
import torch

import unetlab
from helpers.ep_pipelines import call, in_float64
from unetlab.accel import BranchCacheConfig, ClockworkConfig, EncoderPropagationConfig, load_config
from unetlab.accel.forecast import Forecast
from unetlab.testing import tiny_sd_pipeline, tiny_unet
from unetlab.unet import example_inputs

STEPS = 8
KEYS = [0, 1, 3, 6]  # non-uniform spacing: 1, 2, 3
PAPER_KEYS = [0, 1, 2, 3, 5, 10, 15, 25, 35]
DEEP = ("down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1")  # tiny sd, branch 0 / level 1
ENCODER = ("conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block")  # the skips and the bottleneck


@pytest.fixture(scope="module")
def sd():
    g = torch.Generator().manual_seed(3)
    kw = dict(
        prompt_embeds=torch.randn(1, 5, 16, generator=g),
        negative_prompt_embeds=torch.randn(1, 5, 16, generator=g),
        height=64,
        width=64,
        output_type="latent",
    )
    return tiny_sd_pipeline(), kw


# ------------------------------------------------------------------ the math
def _integer_field(seed, shape=(3, 4)):
    """Integer-valued float64 tensors: every divided difference below is then computed without rounding."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(-9, 10, shape, generator=g).double() for _ in range(3)]


@pytest.mark.parametrize("degree,order_", [(1, 1), (1, 2), (2, 2)])
def test_a_polynomial_of_the_forecast_order_is_forecast_exactly_at_non_uniform_steps(degree, order_):
    A, B, C = _integer_field(degree)
    F = (lambda s: A + B * s) if degree == 1 else (lambda s: A + B * s + C * s * s)
    fc = Forecast(order_)
    for i, s in enumerate(PAPER_KEYS):
        fc.update(F(s), s)
        for k in (1, 2, 4, 7):
            if i >= degree:  # degree + 1 full steps determine the polynomial
                assert torch.equal(fc.at(s + k), F(s + k)), (s, k)
    assert fc.steps == PAPER_KEYS[::-1][: order_ + 1]


def test_lower_orders_are_not_exact_and_taylor2_falls_back_to_taylor1():
    A, B, C = _integer_field(5)

    def quadratic(s):
        return A + B * s + C * s * s

    one, two, copy = Forecast(1), Forecast(2), Forecast(0)
    for s in (0, 3):
        for fc in (one, two, copy):
            fc.update(quadratic(s), s)
    assert torch.equal(two.at(5), one.at(5))  # two full steps: the second difference is not there yet
    assert torch.equal(copy.at(5), quadratic(3))  # copy: the last full step's feature
    for fc in (one, two):
        fc.update(quadratic(4), 4)
    assert torch.equal(two.at(9), quadratic(9)) and not torch.equal(one.at(9), quadratic(9))


def test_one_stored_step_is_a_copy_in_fresh_tensors():
    F = (torch.randn(2, 3), (torch.randn(4), torch.randn(1)))
    for order_ in (0, 1, 2):
        fc = Forecast(order_)
        fc.update(F, 5)
        out = fc.at(9)
        assert torch.equal(out[0], F[0]) and all(torch.equal(a, b) for a, b in zip(out[1], F[1]))
        assert out[0] is not F[0] and type(out[1]) is tuple


# ------------------------------------------------------------------ an independent reference
def _leafwise(fn, *outs):
    if torch.is_tensor(outs[0]):
        return fn(*outs)
    return type(outs[0])(_leafwise(fn, *parts) for parts in zip(*outs))


def _newton(points, s):
    """The polynomial through `points` [(step, value), ...] (newest first, 1 to 3 of them), evaluated at `s`."""
    (s0, F0), rest = points[0], points[1:]
    if not rest:
        return F0.clone()
    s1, F1 = rest[0]
    D1 = (F0 - F1) / (s0 - s1)
    if len(rest) == 1:
        return F0 + (s - s0) * D1
    s2, F2 = rest[1]
    D2 = (D1 - (F1 - F2) / (s1 - s2)) / (s0 - s2)
    return F0 + (s - s0) * D1 + (s - s0) * (s - s1) * D2


@contextlib.contextmanager
def reference(unet, names, is_full, order_):
    """Plain forward hooks on the unpatched UNet: the UNet's calls are counted; at a full call the outputs of the
    modules `names` are recorded, at any other call each is replaced by its forecast from the last order_ + 1."""
    memo = {"step": -1, "history": {}}
    modules = dict(unet.named_modules())

    def count(module, args):
        memo["step"] += 1

    def replace(module, args, out, name):
        s, history = memo["step"], memo["history"].setdefault(name, [])
        if is_full(s):
            history.insert(0, (s, out))
            del history[order_ + 1 :]
            return None
        steps = [p[0] for p in history]
        return _leafwise(lambda *values: _newton(list(zip(steps, values)), s), *[p[1] for p in history])

    hooks = [unet.register_forward_pre_hook(count)]
    hooks += [modules[n].register_forward_hook(lambda m, a, o, n=n: replace(m, a, o, n)) for n in names]
    try:
        yield memo
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("reuse,order_", [("taylor1", 1), ("taylor2", 2)])
def test_branch_cache_and_clockwork_forecasts_equal_the_plain_hook_reference(sd, reuse, order_):
    pipe, kw = sd
    with reference(pipe.unet, DEEP, lambda s: s % 2 == 0, order_):
        ref = call(pipe, kw, STEPS)
    with unetlab.branch_cache(pipe, interval=2, branch=0, reuse=reuse) as h:
        bc = call(pipe, kw, STEPS)
        assert h.config.reuse == reuse
    with unetlab.clockwork(pipe, clock=2, level=1, reuse=reuse):
        cw = call(pipe, kw, STEPS)
    with unetlab.branch_cache(pipe, interval=2, branch=0):
        copied = call(pipe, kw, STEPS)
    assert torch.equal(bc, ref) and torch.equal(cw, ref)
    assert (bc - copied).abs().max() > 1e-4  # forecasting changed the cheap steps
    with reference(pipe.unet, DEEP, lambda s: s % 2 == 0, 0):
        assert torch.equal(call(pipe, kw, STEPS), copied)  # the reference copies with order 0, as the handle does


@pytest.mark.parametrize("reuse,order_", [("taylor1", 1), ("taylor2", 2)])
def test_encoder_propagation_forecast_equals_the_reference_and_parallel_equals_sequential(sd, reuse, order_):
    pipe, kw = sd
    with reference(pipe.unet, ENCODER, lambda s: s in KEYS, order_):
        ref = call(pipe, kw, STEPS)
    with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=False, noise_injection=None, reuse=reuse):
        seq = call(pipe, kw, STEPS)
    with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=False, noise_injection=None):
        copied = call(pipe, kw, STEPS)
    assert torch.equal(seq, ref) and (seq - copied).abs().max() > 1e-4
    with in_float64(pipe, kw) as kw64:
        with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=False, noise_injection=None, reuse=reuse):
            seq64 = call(pipe, kw64, STEPS)
        with unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=True, noise_injection=None, reuse=reuse):
            par64 = call(pipe, kw64, STEPS)
    assert ((par64 - seq64).abs().max() / seq64.abs().max()).item() < 1e-10


# ------------------------------------------------------------------ one full step: copying
def test_one_full_step_forecasts_equal_copying_bit_for_bit(sd):
    pipe, kw = sd
    with unetlab.branch_cache(pipe, interval=STEPS):
        bc = call(pipe, kw, STEPS)
    ep = {}
    for parallel in (False, True):
        with unetlab.encoder_propagation(pipe, key_steps=[0], noise_injection=None, parallel=parallel):
            ep[parallel] = call(pipe, kw, STEPS)
    for reuse in ("taylor1", "taylor2"):
        with unetlab.branch_cache(pipe, interval=STEPS, reuse=reuse):
            assert torch.equal(call(pipe, kw, STEPS), bc)
        for parallel in (False, True):
            with unetlab.encoder_propagation(pipe, key_steps=[0], noise_injection=None, parallel=parallel, reuse=reuse):
                assert torch.equal(call(pipe, kw, STEPS), ep[parallel]), parallel


def test_a_batch_change_starts_a_new_history():
    unet = tiny_unet("sd")
    x, cond = example_inputs(unet, 2, seq_len=5, generator=torch.Generator().manual_seed(0))
    half = {k: v[:1] for k, v in cond.items()}
    outs = {}
    with torch.no_grad():
        for reuse in ("copy", "taylor1"):
            with unetlab.branch_cache(unet, interval=3, reuse=reuse) as h:
                for s, t in enumerate((900, 800, 700, 600)):
                    unet(x * (1 - s / 10), t, **cond)
                unet(x[:1], 500, **half)  # step 4, cheap by the schedule: a new batch runs full
                outs[reuse] = unet(x[:1] * 0.9, 400, **half).sample  # step 5: one full step of this batch stored
                assert h.calls[-2:] == [(4, True), (5, False)]
    assert torch.equal(outs["taylor1"], outs["copy"])


# ------------------------------------------------------------------ configs and errors
def test_configs_round_trip_through_json(tmp_path):
    for cfg in (
        BranchCacheConfig(interval=4, reuse="taylor2"),
        ClockworkConfig(clock=3, reuse="taylor1"),
        EncoderPropagationConfig(key_steps=KEYS, reuse="taylor2"),
    ):
        back = load_config(cfg.save(tmp_path / f"{cfg.kind}.json"))
        assert back == cfg and back.to_dict()["reuse"] == cfg.reuse
    assert BranchCacheConfig().reuse == ClockworkConfig().reuse == EncoderPropagationConfig().reuse == "copy"


@pytest.mark.parametrize("bad", ["taylor3", "Copy", "", 1, None, True])
@pytest.mark.parametrize("apply", [unetlab.branch_cache, unetlab.clockwork, unetlab.encoder_propagation])
def test_bad_reuse_values_raise_one_line_errors(sd, bad, apply):
    pipe, _ = sd
    with pytest.raises(ValueError) as e:
        apply(pipe, reuse=bad)
    msg = str(e.value)
    assert msg.startswith("reuse: expected one of 'copy', 'taylor1', 'taylor2'") and "\n" not in msg
    assert "_unetlab_patches" not in pipe.unet.__dict__
    with pytest.raises(ValueError, match="^reuse: "):
        BranchCacheConfig.from_dict({**BranchCacheConfig().to_dict(), "reuse": bad})


# ------------------------------------------------------------------ stacking
def test_encoder_propagation_then_branch_caching_both_forecasting(sd):
    pipe, kw = sd
    base = call(pipe, kw, STEPS)
    with (
        unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None, reuse="taylor2"),
        unetlab.branch_cache(pipe, interval=1, reuse="taylor2"),
    ):
        assert torch.equal(call(pipe, kw, STEPS), base)
    out = {}
    for reuse in ("copy", "taylor1"):
        for parallel in (True, False):  # sequential under branch caching either way
            with (
                unetlab.encoder_propagation(pipe, key_steps=KEYS, parallel=parallel, reuse=reuse),
                unetlab.branch_cache(pipe, interval=2, reuse=reuse) as cache,
            ):
                out[reuse, parallel] = call(pipe, kw, STEPS)
                assert [full for _, full in cache.calls] == [s % 2 == 0 for s in range(STEPS)]
    assert torch.equal(out["taylor1", True], out["taylor1", False])
    assert torch.isfinite(out["taylor1", True]).all() and not torch.equal(out["taylor1", True], out["copy", True])
    assert torch.equal(call(pipe, kw, STEPS), base)


# ------------------------------------------------------------------ bench rows
def test_bench_has_forecast_rows_next_to_the_copying_ones(sd):
    from unetlab.bench.rows import default_rows

    def reuse(row):
        configs = row.recipe.accelerators if row.recipe else ()
        return getattr(configs[0], "reuse", "copy") if configs else "copy"

    pipe, _ = sd
    full = {r.name: r for r in default_rows(pipe.unet, 50)}
    forecast = [r for r in full.values() if reuse(r) != "copy"]
    assert {r.family for r in forecast} == {"branch-cache", "clockwork", "encoder-propagation"}
    for r in forecast:
        copy_name = r.name.rsplit(" ", 1)[0]
        assert copy_name in full and reuse(full[copy_name]) == "copy", r.name
        with unetlab.accelerate(pipe, r.recipe) as h:
            assert [a.config.reuse for a in h.handles] == [reuse(r)]
    quick = [r.name for r in default_rows(pipe.unet, 50, quick=True) if reuse(r) != "copy"]
    assert quick == ["branch cache N=3 layer taylor1"]  # the main job's one forecast row: DeepCache's setting
