"""`unetlab train` as real processes: one, killed and resumed, or under `accelerate launch` with two processes."""

import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

import unetlab

SRC = str(Path(unetlab.__file__).resolve().parents[1])
# digits at their native 8x8, 4 images a step, one checkpoint (with a 2-step sample grid) per step
TINY = [
    "train",
    "ddpm",
    "--data",
    "digits",
    "--size",
    "8",
    "--steps",
    "5",
    "--warmup",
    "2",
    "--lr",
    "1e-3",
    "--seed",
    "3",
    "--sample-steps",
    "2",
    "--threads",
    "1",
    "--no-progress",
]


def env(tmp: Path) -> dict:
    e = dict(
        os.environ,
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        HF_HOME=str(tmp / "hf"),
        PYTHONHASHSEED="0",
    )
    e.pop("ACCELERATE_USE_CPU", None)
    return e


def cli(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "unetlab.cli", *TINY, *args]


def launch2(tmp: Path, *args: str) -> list[str]:
    """Two CPU processes (gloo): accelerate 1.x starts several CPU processes with the torch.distributed launcher
    (`--multi_gpu`) when ACCELERATE_USE_CPU is set; `--cpu` alone starts one."""
    return [
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
        "-m",
        "unetlab.cli",
        *TINY,
        *args,
    ]


def run(cmd: list[str], tmp: Path, **env_extra) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, env={**env(tmp), **env_extra}, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def final(out: Path) -> tuple[dict, dict]:
    last = out / (out / "latest").read_text().strip()
    return load_file(last / "unet.safetensors"), load_file(last / "ema_unet.safetensors")
