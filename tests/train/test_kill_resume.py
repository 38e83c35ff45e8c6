"""A `unetlab train` process killed (SIGKILL) at random moments, once in the middle of a checkpoint write, and
resumed each time, ends bit for bit where an uninterrupted run with the same seed ends."""

import json
import random
import subprocess
import time

import pytest
import torch

from helpers.processes import TINY, cli, env, final, run
from unetlab.cli import main

pytestmark = pytest.mark.slow  # spawns processes


def _kill_when(p: subprocess.Popen, ready) -> bool:
    """SIGKILL `p` as soon as `ready()` holds; False when it finished first."""
    while p.poll() is None:
        if ready():
            p.kill()
            p.wait()
            return True
        time.sleep(0.001)
    return False


def _writing(out):
    return lambda: any(out.glob(".tmp-checkpoint-*"))


def _after_grid(out, target, delay):
    """True from `delay` seconds after the `target`-th sample grid (one per checkpoint) has appeared."""
    deadline = []

    def ready():
        if not deadline and len(list(out.glob("samples/*.png"))) >= target:
            deadline.append(time.monotonic() + delay)
        return bool(deadline) and time.monotonic() >= deadline[0]

    return ready


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main([*TINY, "--out", str(ref), "--checkpoint-every", "1"]) == 0  # in-process: one start fewer
    rng = random.Random(16)
    kills = 0
    for attempt in range(2):
        p = subprocess.Popen(
            cli(tmp_path, "--out", str(out), "--checkpoint-every", "1", "--resume"),
            env=env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if attempt == 0:  # the moment a checkpoint is half written
            ready = _writing(out)
        else:  # a random moment after a random one of the checkpoints 1-4 (of 5): within a step or a write
            ready = _after_grid(out, rng.randint(1, 4), rng.uniform(0, 0.02))
        kills += _kill_when(p, ready)
    assert kills == 2, "the run finished before it could be killed"
    run(cli(tmp_path, "--out", str(out), "--checkpoint-every", "1", "--resume"), tmp_path)
    (wa, ea), (wb, eb) = final(ref), final(out)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
        assert torch.equal(ea[key], eb[key]), key
    sa = json.loads((ref / (ref / "latest").read_text().strip() / "state.json").read_text())
    sb = json.loads((out / (out / "latest").read_text().strip() / "state.json").read_text())
    assert sa["step"] == sb["step"] == 5
    assert [h["loss"] for h in sa["history"]] == [h["loss"] for h in sb["history"]]
    assert not list(out.glob(".tmp-*"))
