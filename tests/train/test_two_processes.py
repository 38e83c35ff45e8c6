"""`unetlab train` under `accelerate launch` with two CPU processes (gloo), half the batch each, ends where one
process with the whole batch ends, up to floating-point summation order."""

import json

import pytest
import torch

from helpers.processes import TINY, final, launch2, run
from unetlab.cli import main

pytestmark = pytest.mark.slow  # spawns processes

STEPS, LR = 5, 1e-3  # as in TINY


def _history(out):
    return json.loads((out / (out / "latest").read_text().strip() / "state.json").read_text())["history"]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*TINY, "--out", str(one), "--batch-size", "4", "--checkpoint-every", "1"]) == 0
    run(
        launch2(tmp_path, "--out", str(two), "--batch-size", "2", "--checkpoint-every", "1"),
        tmp_path,
        ACCELERATE_USE_CPU="1",
    )
    h1, h2 = _history(one), _history(two)
    # step 1's loss is taken before any update: the same images and noise give the same mean up to the order of
    # a float32 sum of 4 x 64 terms (relative error <= 256 * 2**-24 = 1.5e-5)
    assert abs(h1[0]["loss"] - h2[0]["loss"]) <= 1.5e-5 * abs(h1[0]["loss"])
    (w1, e1), (w2, e2) = final(one), final(two)
    assert w1.keys() == w2.keys()
    diff = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in w1])
    # AdamW moves every parameter by about LR per step (m/sqrt(v) ~ sign(g)), so a different image or noise draw
    # would show as differences of order LR in most parameters; summation order only perturbs parameters whose
    # gradient cancels to rounding level, and only by a part of one step
    assert float(diff.max()) < STEPS * LR / 20, float(diff.max())
    assert float(diff.median()) < LR * 1e-3, float(diff.median())
    for k in e1:
        assert torch.allclose(e1[k], e2[k], rtol=0, atol=STEPS * LR / 20), k
    assert not list(two.glob(".tmp-*")) and (two / "samples").is_dir()
