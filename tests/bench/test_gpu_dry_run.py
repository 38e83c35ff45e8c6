"""The GPU device script's dry run (`bash benchmarks/gpu.sh --dry-run all`): the same code paths as the full-size
run on a lent GPU, on the CPU at channels / 10, so the prepared device call cannot rot between loans."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from unetlab.bench.report import validate

ROOT = Path(__file__).resolve().parents[2]
BENCH_PARTS = {  # part: (arch, compile backend, methods that must have been timed)
    "sd15-ddim50-eager": ("sd15", None, {"DDIM-4", "branch cache N=2 B=0", "T-GATE pkg gate=2"}),
    "sd15-dpm25-eager": ("sd15", None, {"DPM++-4", "branch cache N=2 B=0"}),
    "sdxl-ddim50-eager": ("sdxl", None, {"DDIM-4"}),
    "sd15-ddim50-compiled": ("sd15", "eager", {"DDIM-4"}),
}


@pytest.mark.slow
def test_gpu_script_dry_run_writes_every_table_and_the_trained_model(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--dry-run", "all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check_outputs(tmp_path)


def check_outputs(tmp_path: Path) -> None:
    """Every part done, each table with its rows and settings, the model in float16 shards of at most 16 MiB."""
    summary = (tmp_path / "summary.txt").read_text()
    for name in [*BENCH_PARTS, "train", "export"]:
        assert f"{name}: done" in summary, (summary, (tmp_path / f"{name}.log").read_text()[-3000:])
    assert "sdxl-ddim50-compiled: skipped in the dry run" in summary
    for name, (arch, backend, timed) in BENCH_PARTS.items():
        result = json.loads((tmp_path / "bench" / name / "bench.json").read_text())
        validate(result)
        s = result["settings"]
        assert (s["arch"], s["scale"], s["latent_size"], s["dtype"], s["compile"]) == (arch, 10, 8, "float32", backend)
        rows = {r["method"]: r for r in result["rows"]}
        assert all(rows[m]["seconds_per_image"] > 0 for m in timed), rows
        assert all((rows[m]["compile_s"] is None) == (backend is None) for m in timed)
        md = (tmp_path / "bench" / name / "bench.md").read_text()
        assert f"Shape: {arch} UNet, channels / 10, 8×8 latent, float32" in md
        assert ("**Compiled:" in md) == (backend is not None)
    compiled = {
        r["method"]: r for r in json.loads((tmp_path / "bench/sd15-ddim50-compiled/bench.json").read_text())["rows"]
    }
    assert compiled["tomesd ratio=0.5"]["unsupported"].startswith("under torch.compile:")
    shards = list((tmp_path / "mini-sd-gpu").rglob("*.safetensors"))
    assert {p.parent.name for p in shards} >= {"unet", "text_encoder", "vae"}
    assert all(p.stat().st_size <= 16 * 2**20 for p in shards)
    with safe_open(next(p for p in shards if p.parent.name == "unet"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype.is_floating_point
        assert str(f.get_tensor(next(iter(f.keys()))).dtype) == "torch.float16"
