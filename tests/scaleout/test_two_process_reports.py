"""`unetlab bench` and `unetlab analyze` under `accelerate launch` with two CPU processes (gloo): the images and
seeds are shared out, and the main process writes one report whose quality columns equal the single-process ones."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from diffusers import DDIMPipeline, DDIMScheduler
from reports import run_all

import unetlab
from unetlab.testing import tiny_unet

pytestmark = pytest.mark.slow  # spawns processes

SRC = str(Path(unetlab.__file__).resolve().parents[1])
QUALITY = ("method", "steps", "psnr", "ssim", "flops_per_image", "speedup_flops", "accuracy", "fd", "unsupported")


def _launch2(pipe, out, tmp):
    env = dict(
        os.environ,
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        HF_HOME=str(tmp / "hf"),
        ACCELERATE_USE_CPU="1",
    )
    cmd = [
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
        str(Path(__file__).with_name("reports.py")),
        str(pipe),
        str(out),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


# The images are float32 and each is computed alone (batch size 1) on either side, so they agree to a few float32
# rounding steps wherever the kernels round differently; metrics summed over a 16x16x3 image then agree to
# ~768 * 2**-24 = 5e-5 relative, and statistics merged across processes to float64 rounding.
REL = 5e-5


def _close(a, b, path=""):
    """Equal structures; floats equal to `REL` relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) and math.isnan(b)):
        assert a == pytest.approx(b, rel=REL, abs=1e-12), path
    elif not (isinstance(a, float) and math.isnan(a)):
        assert a == b, path


def test_bench_and_analyze_on_two_processes_report_what_one_process_reports(tmp_path):
    pipe = tmp_path / "pipe"
    DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(pipe)
    run_all(str(pipe), str(tmp_path / "one"))
    _launch2(pipe, tmp_path / "two", tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    b1, b2 = (json.loads((d / "bench" / "bench.json").read_text()) for d in (one, two))
    assert b2["settings"]["processes"] == 2 and b1["settings"]["processes"] == 1
    _close([{k: r[k] for k in QUALITY} for r in b1["rows"]], [{k: r[k] for k in QUALITY} for r in b2["rows"]])
    assert all(r["speedup_wall"] is not None for r in b2["rows"] if not r["unsupported"])
    for name in ("perturbation.json", "ablation.json", "trace.json"):
        _close(*(json.loads((d / "analyze" / name).read_text()) for d in (one, two)), name)
    assert sorted(p.name for p in (two / "analyze").iterdir()) == sorted(p.name for p in (one / "analyze").iterdir())
