"""The one timing function of `unetlab bench` and `unetlab tune` (`bench.timing.time_rounds`), on a patched clock:
a slow call or a slow round cannot move a speed-up or the choice; rounds that spread are re-timed, and so is a
speed-up 2x off its prediction; a method that computes what the baseline computes reads 1.00x."""

from contextlib import contextmanager

import pytest

from unetlab.bench import harness, timing
from unetlab.recipes import Recipe

COST = {"base": 10.0, "a": 5.0, "b": 4.0, "c": 8.0}  # seconds per call on a quiet machine: b is the fastest


class Clock:
    """Each call lasts its method's `COST`, times `disturb(call_index)`; `calls` records (index, method). Method k
    is a recipe of 10 + k steps; applying it (`accelerate`) makes it the current method."""

    def __init__(self, disturb=lambda i: 1.0, cost=COST):
        self.disturb, self.cost, self.current, self.calls = disturb, cost, None, []
        self.by_steps = {}

    def recipes(self, names):
        self.by_steps = {10 + k: name for k, name in enumerate(names)}
        return {name: Recipe(10 + k, "DDIMScheduler") for k, name in enumerate(names)}

    @contextmanager
    def accelerate(self, pipe, recipe):
        self.current = self.by_steps[recipe.num_inference_steps]
        yield

    def __call__(self, run):
        i = len(self.calls)
        self.calls.append((i, self.current))
        return self.cost[self.current] * self.disturb(i)


class Stub:
    pipe = None

    def generate(self, *a, **k):
        return None


def _time(monkeypatch, clock, names=("base", "a", "b", "c"), rounds=3, expected=None):
    monkeypatch.setattr(timing, "wall_time", clock)
    monkeypatch.setattr(timing, "accelerate", clock.accelerate)
    return timing.time_rounds(Stub(), clock.recipes(names), 1, rounds, 0, None, expected)


def _fastest(t) -> str:
    return max((n for n in t if n != "base"), key=lambda n: t[n]["speedup_wall"])


def test_quiet_machine_reads_the_true_ratios(monkeypatch):
    t = _time(monkeypatch, Clock())
    assert {n: t[n]["speedup_wall"] for n in t} == {"base": 1.0, "a": 2.0, "b": 2.5, "c": 1.25}
    assert all(r["timing_rounds"] == 3 and r["timing_retimed"] == 0 and r["timing_settled"] for r in t.values())
    assert t["b"]["seconds_per_image"] == 4.0 and _fastest(t) == "b"


@pytest.mark.parametrize("slow_call", range(4, 16))  # every call of the first 3 rounds (after 4 warm-ups)
def test_one_disturbed_call_moves_no_speed_up_and_not_the_choice(monkeypatch, slow_call):
    clean = _time(monkeypatch, Clock())
    t = _time(monkeypatch, Clock(lambda i: 50.0 if i == slow_call else 1.0))
    assert {n: t[n]["speedup_wall"] for n in t} == {n: clean[n]["speedup_wall"] for n in clean}
    assert _fastest(t) == _fastest(clean) == "b"


@pytest.mark.parametrize("slow_round", range(3))
def test_a_whole_slow_round_moves_nothing(monkeypatch, slow_round):
    clean = _time(monkeypatch, Clock())
    start = 4 + 4 * slow_round
    t = _time(monkeypatch, Clock(lambda i: 30.0 if start <= i < start + 4 else 1.0))
    assert {n: t[n]["speedup_wall"] for n in t} == {n: clean[n]["speedup_wall"] for n in clean}
    for n in ("a", "b", "c"):  # the slow round shows in the paired ratios, which bracket the speed-up
        assert t[n]["speedup_wall_min"] <= t[n]["speedup_wall"] <= t[n]["speedup_wall_max"]


def test_rounds_that_spread_are_re_timed_and_a_steady_method_is_not(monkeypatch):
    # b is slowed by 60% in its first two rounds: its fastest 3 times spread more than 25%
    def disturb(i):
        return 1.6 if i < 12 and clock.current == "b" else 1.0

    clock = Clock(disturb)
    t = _time(monkeypatch, clock)
    assert t["b"]["timing_retimed"] == 1 and t["b"]["timing_rounds"] == 6 and t["b"]["timing_settled"]
    assert t["a"]["timing_retimed"] == 0 and t["a"]["timing_rounds"] == 3
    assert t["base"]["timing_rounds"] == 6  # re-timed with the method, paired
    assert t["b"]["speedup_wall"] == 2.5
    retimed = [name for i, name in clock.calls[16:]]
    assert sorted(retimed) == ["b", "b", "b", "base", "base", "base"]


def test_a_baseline_that_spreads_re_times_every_method(monkeypatch):
    clock = Clock()
    clock.disturb = lambda i: 2.0 if i < 12 and clock.current == "base" else 1.0
    t = _time(monkeypatch, clock)
    assert all(t[n]["timing_retimed"] == 1 for n in ("a", "b", "c")) and t["a"]["speedup_wall"] == 2.0


def test_a_speed_up_2x_off_its_prediction_is_re_measured(monkeypatch):
    # every baseline call of the first three rounds is 8x slow (the spread is 0 within them): a reads 16x,
    # predicted 2x -> re-measured with the baseline, which then reads 2x
    clock = Clock()
    clock.disturb = lambda i: 8.0 if i < 16 and clock.current == "base" else 1.0
    t = _time(monkeypatch, clock, names=("base", "a"), expected={"a": 2.0})
    assert t["a"]["timing_retimed"] >= 1 and t["a"]["speedup_wall"] == 2.0 and not t["a"]["timing_disagrees"]
    untouched = _time(monkeypatch, Clock(), names=("base", "a"), expected={"a": 2.0})
    assert untouched["a"]["timing_retimed"] == 0


def test_a_lasting_disagreement_is_reported_after_at_most_two_re_timings(monkeypatch):
    t = _time(monkeypatch, Clock(), names=("base", "c"), expected={"c": 5.0})  # measured 1.25x, "predicted" 5x
    assert t["c"]["timing_retimed"] == timing.RETIMES and t["c"]["timing_disagrees"]
    assert t["c"]["timing_rounds"] == 3 * (1 + timing.RETIMES)


def test_a_method_computing_the_baseline_reads_one(monkeypatch):
    # the first call of every round (and the warm-up) takes 1.4x: with the baseline always first this read 1.40x
    clock = Clock(cost={"base": 1.0, "noop": 1.0})
    clock.disturb = lambda i: 1.4 if i % 2 == 0 else 1.0  # 2 warm-ups, then rounds of 2 calls
    t = _time(monkeypatch, clock, names=("base", "noop"), rounds=4)
    assert t["noop"]["speedup_wall"] == 1.0 and t["base"]["speedup_wall"] == 1.0
    assert t["noop"]["speedup_wall_min"] == pytest.approx(1 / 1.4) and t["noop"]["speedup_wall_max"] == 1.4


def test_order_rotates_every_round(monkeypatch):
    clock = Clock(cost={"a": 1.0, "b": 1.0, "c": 1.0})
    _time(monkeypatch, clock, names=("a", "b", "c"))
    assert [name for _, name in clock.calls] == [
        "a",
        "b",
        "c",  # warm-up
        "a",
        "b",
        "c",
        "b",
        "c",
        "a",
        "c",
        "a",
        "b",
    ]


def test_the_given_clock_times_every_call_and_the_default_none(monkeypatch):
    # a CPU clock for per-call overheads (benchmarks/overhead.py): every call, warm-ups included, goes through it
    clock, generated = Clock(), []

    class Recorder(Stub):
        def generate(self, *a, **k):
            generated.append(clock.current)

    def given(run):
        run()
        return clock(run)

    monkeypatch.setattr(timing, "wall_time", lambda run: pytest.fail("the default clock timed a call"))
    monkeypatch.setattr(timing, "accelerate", clock.accelerate)
    t = timing.time_rounds(Recorder(), clock.recipes(["base", "a"]), 1, 2, 0, clock=given)
    assert t["a"]["speedup_wall"] == 2.0 and t["a"]["seconds_per_image"] == 5.0
    assert [name for _, name in clock.calls] == generated == ["base", "a", "base", "a", "a", "base"]


@pytest.mark.parametrize("rounds", [1, 0, True])
def test_fewer_than_two_rounds_are_refused(monkeypatch, rounds):
    with pytest.raises(ValueError, match="repeats: expected an integer >= 2"):
        _time(monkeypatch, Clock(), rounds=rounds)


def test_quality_images_are_sampled_in_batches_that_do_not_depend_on_the_process(monkeypatch):
    calls = []

    class Recorder:
        unet = None

        def generate(self, n, steps, seed):
            calls.append((n, seed))
            import torch

            return torch.full((n, 1, 2, 2), float(seed))

    monkeypatch.setattr(harness, "unet_flops", lambda run, unet: (run(), 10))
    images, flops = harness.sample_batched(Recorder(), 7, 4, 100, 3)
    assert calls == [(3, 100), (3, 103), (1, 106)]  # never more than --batch-size at once; image i from seed + i
    assert images[:, 0, 0, 0].tolist() == [100, 100, 100, 103, 103, 103, 106] and flops == 30


def test_bench_rows_do_not_move_with_a_slow_call(monkeypatch):
    """`unetlab bench` end to end on a tiny pipeline, each timed call lasting its FLOPs and operators."""
    from diffusers import DDIMPipeline, DDIMScheduler

    from unetlab.bench import cost
    from unetlab.eval.workload import Workload
    from unetlab.testing import tiny_unet

    pipe = DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    w = Workload("tiny", pipe, None, None, call_kwargs={"output_type": "np"})

    def rows(slow):
        calls = []

        def clock(run):
            _, flops, ops = cost.count(run)
            calls.append(flops)
            return (flops * 1e-9 + ops * 1e-5) * (20.0 if len(calls) - 1 == slow else 1.0)

        monkeypatch.setattr(timing, "wall_time", clock)
        result = harness.bench(
            workload=w,
            steps=6,
            num_images=1,
            timing_images=1,
            repeats=2,
            quick=True,
            methods=["branch cache N=2 B=0", "EP uniform:2"],
        )
        return {r["method"]: r["speedup_wall"] for r in result["rows"] if not r["unsupported"]}, len(calls)

    clean, n = rows(None)
    assert len(clean) >= 4 and clean["DDIM-6"] == 1.0
    for k in range(n):
        assert rows(k)[0] == clean, f"call {k} slowed moved a speed-up"
