"""Paired, rotated timing in `unetlab bench`: a method that computes what the baseline computes reads 1.00x
within its spread, whatever the machine does to the first call of a round or to later calls."""

import pytest

from unetlab.eval import bench as bench_mod
from unetlab.eval.bench_methods import Method


class Clock:
    """Scripted call durations: `duration(call_index, position_in_round)`."""

    def __init__(self, n_methods, duration):
        self.n, self.duration, self.calls = n_methods, duration, 0

    def __call__(self, run):
        i, self.calls = self.calls, self.calls + 1
        return self.duration(i, i % self.n)


class Stub:
    pipe = None

    def generate(self, *a, **k):
        return None


def _rows(monkeypatch, n, duration, repeats):
    monkeypatch.setattr(bench_mod, "wall_time", Clock(n, duration))
    methods = [Method("baseline", "base", {}, 10)] + [Method("tome", f"noop{i}", {}, 10) for i in range(n - 1)]

    class Bar:
        def update(self, k):
            pass
    return bench_mod._time_rounds(Stub(), methods, 2, repeats, 0, Bar())


@pytest.mark.parametrize("repeats", [3, 4, 7])
def test_first_call_of_a_round_slower_does_not_favour_any_method(monkeypatch, repeats):
    # the first call of every round (and the warm-up) takes 1.4x: with the baseline always first this read 1.40x
    t = _rows(monkeypatch, 2, lambda i, pos: 1.4 if pos == 0 else 1.0, repeats)
    row = t["noop0"]
    assert row["speedup_wall_min"] <= 1.0 <= row["speedup_wall_max"]
    assert row["speedup_wall_min"] == pytest.approx(1 / 1.4) and row["speedup_wall_max"] == pytest.approx(1.4)
    assert t["base"]["speedup_wall"] == t["base"]["speedup_wall_min"] == t["base"]["speedup_wall_max"] == 1.0


def test_ratio_pairs_each_method_with_the_baseline_of_its_round(monkeypatch):
    # the machine gets 10x slower from round to round: paired ratios stay 1, cross-round medians would not
    n = 3
    t = _rows(monkeypatch, n, lambda i, pos: 10.0 ** (i // n), 5)
    for name in ("noop0", "noop1"):
        assert t[name]["speedup_wall"] == t[name]["speedup_wall_min"] == t[name]["speedup_wall_max"] == 1.0


def test_order_rotates_every_round(monkeypatch):
    order = []

    def record(m):
        def apply(pipe):
            order.append(m)
            return []
        return apply
    monkeypatch.setattr(bench_mod, "wall_time", lambda run: 1.0)
    methods = [Method("baseline", "a", {}, 1, record("a")), Method("tome", "b", {}, 1, record("b")),
               Method("tome", "c", {}, 1, record("c"))]

    class Bar:
        def update(self, k):
            pass
    bench_mod._time_rounds(Stub(), methods, 1, 3, 0, Bar())
    assert order == ["a", "b", "c",  # warm-up
                     "a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_quality_images_are_sampled_in_batches_that_do_not_depend_on_the_process(monkeypatch):
    calls = []

    class Recorder:
        unet = None

        def generate(self, n, steps, seed):
            calls.append((n, seed))
            import torch
            return torch.full((n, 1, 2, 2), float(seed))

    monkeypatch.setattr(bench_mod, "unet_flops", lambda run, unet: (run(), 10))
    images, flops = bench_mod.sample_batched(Recorder(), 7, 4, 100, 3)
    assert calls == [(3, 100), (3, 103), (1, 106)]  # never more than --batch-size at once; image i from seed + i
    assert images[:, 0, 0, 0].tolist() == [100, 100, 100, 103, 103, 103, 106] and flops == 30
