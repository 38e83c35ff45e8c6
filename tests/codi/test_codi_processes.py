"""`unetlab train codi --variant codi` under `accelerate launch` with two CPU processes (gloo), half the batch
each, ends where one process with the whole batch ends, up to floating-point summation order: the adapter and
the UNet train as one module (`AdaptedUNet`), whose DistributedDataParallel wrapper synchronises both, and every
draw (t, noise, boxes) is a row of the step's global draws."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers.codi_tiny import tiny_teacher
from helpers.processes import env

pytestmark = pytest.mark.slow  # spawns processes

STEPS, LR = 4, 1e-3


def _args(teacher, out, batch):
    return [
        "train",
        "codi",
        "--teacher",
        str(teacher),
        "--data",
        "digits",
        "--task",
        "inpaint",
        "--variant",
        "codi",
        "--grid-size",
        "5",
        "--steps",
        str(STEPS),
        "--warmup",
        "1",
        "--lr",
        str(LR),
        "--seed",
        "3",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
        "--batch-size",
        str(batch),
        "--checkpoint-every",
        "1",
    ]


def _run(cmd, tmp):
    p = subprocess.run(cmd, env=env(tmp), capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]


def _last(out):
    last = out / (out / "latest").read_text().strip()
    state = json.loads((last / "state.json").read_text())
    return state, load_file(last / "student.safetensors"), load_file(last / "ema_student.safetensors")


def test_codi_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    teacher = tmp_path / "teacher"
    tiny_teacher(size=8).save_pretrained(teacher)
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "unetlab.cli", *_args(teacher, one, 4)], tmp_path)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]
    p = subprocess.run(
        [*launch, "-m", "unetlab.cli", *_args(teacher, two, 2)],
        env={**env(tmp_path), "ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (s1, w1, e1), (s2, w2, e2) = _last(one), _last(two)
    assert s2["world_size"] == 2 and w1.keys() == w2.keys()
    assert any(k.startswith("unet.") for k in w1) and any(k.startswith("adapter.") for k in w1)
    # step 1's loss is taken before any update: the same images, boxes, t and noise give the same three terms, each
    # a float32 mean of at most 4 x 64 non-negative terms, up to summation order (relative error <= 2 * 256 * 2**-24
    # per term, the sum of the three and the mean over processes adding a few roundings: < 4e-5)
    l1, l2 = s1["history"][0]["loss"], s2["history"][0]["loss"]
    assert abs(l1 - l2) <= 4e-5 * abs(l1), (l1, l2)
    # AdamW moves every parameter by about LR a step (m/sqrt(v) ~ sign(g)), so unsynchronised UNet gradients or
    # other draws would show as differences of order LR; summation order only perturbs parameters whose gradient
    # cancels to rounding level, and only by a part of one step. The attention key biases are left out: their exact
    # gradient is zero (q . b_k is the same for every key, and softmax ignores it), so AdamW moves them by
    # normalised rounding noise, differently in each run
    compared = [k for k in w1 if not k.endswith("to_k.bias")]
    for part in ("adapter.", "unet."):
        diff = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in compared if k.startswith(part)])
        assert float(diff.max()) < STEPS * LR / 20, (part, float(diff.max()))
        assert float(diff.median()) < LR * 1e-3, (part, float(diff.median()))
    start = load_file(teacher / "unet" / "diffusion_pytorch_model.safetensors")
    moved = torch.cat([(w1["unet." + k] - v).abs().flatten() for k, v in start.items()])
    assert float(moved.median()) > LR / 2, float(moved.median())  # the UNet trained (its comparison can fail)
    for k in compared:
        assert torch.allclose(e1[k], e2[k], rtol=0, atol=STEPS * LR / 20), k
    assert not list(two.glob(".tmp-*"))
