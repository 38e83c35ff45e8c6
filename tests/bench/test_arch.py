"""`unetlab bench --arch sd15|sdxl`: the published UNet shapes, the speed-only workloads in each dtype, the compiled
timing (applied once per row, warm-up reported as compile seconds), and the refusals."""

from contextlib import contextmanager

import pytest
import torch

from unetlab.bench import bench, timing
from unetlab.bench.harness import bench_workload
from unetlab.bench.report import markdown
from unetlab.bench.workload import arch_workload, user_workload
from unetlab.recipes import Recipe
from unetlab.unet.configs import sd15_like, sdxl_like


def _parameters(make) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in make(1).parameters())


def test_full_size_unets_have_the_published_parameter_counts():
    assert _parameters(sd15_like) == 859_520_964  # SD-1.5's UNet
    assert _parameters(sdxl_like) == 2_567_463_684  # SDXL base's UNet


def test_sdxl_workload_runs_its_text_time_conditioning_in_bfloat16():
    w = arch_workload("sdxl", sample_size=8, scale=10, dtype="bfloat16")
    assert w.unet.dtype == torch.bfloat16 and w.unet.config.addition_embed_type == "text_time"
    out = w.generate(1, 2, 0)
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert torch.equal(out, w.generate(1, 2, 0))


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(scale=1), "scale: only valid together with arch"),
        (dict(dtype="float16"), "dtype: only valid together with arch"),
        (dict(latent_size=32), "latent_size: only valid together with arch"),
        (dict(compile="eager"), "compile: only valid together with arch"),
        (dict(arch="sd15", random_weights=True, compile="warp"), "compile: unknown torch.compile backend 'warp'"),
        (dict(arch="sd15", random_weights=True, latent_size=12), "latent_size: expected a positive multiple of 8"),
        (dict(arch="sdxl", random_weights=True, latent_size=6), "latent_size: expected a positive multiple of 4"),
        (
            dict(arch="sdxl", random_weights=True, scale=5),
            r"scale: expected 1 \(full size\) or 10 \(channels / 10\), got 5",
        ),
        (dict(arch="sdxl", random_weights=True, dtype="float64"), "dtype: expected one of float32"),
        (dict(arch="sd21", random_weights=True), "arch: only"),
    ],
)
def test_arch_options_are_refused_in_one_line(kwargs, text):
    with pytest.raises(ValueError, match=text):
        bench(steps=2, num_images=1, timing_images=1, repeats=2, **kwargs)


class Clock:
    """Each call lasts 2 s for "base" and 1 s for "half", plus 10 s for the first call of an application (the
    compilation); `applied` records each application."""

    def __init__(self):
        self.current, self.first, self.applied = None, False, []

    @contextmanager
    def accelerate(self, pipe, recipe):
        self.current, self.first = "base" if recipe.num_inference_steps == 10 else "half", True
        self.applied.append(self.current)
        yield

    def __call__(self, run):
        t = (2.0 if self.current == "base" else 1.0) + 10.0 * self.first
        self.first = False
        return t


def test_consecutive_rounds_apply_each_configuration_once_and_report_the_warm_up(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timing, "wall_time", clock)
    monkeypatch.setattr(timing, "accelerate", clock.accelerate)
    recipes = {"base": Recipe(10, "DDIMScheduler"), "half": Recipe(11, "DDIMScheduler")}
    t = timing.time_rounds(type("W", (), {"pipe": None})(), recipes, 1, 3, 0, consecutive=True)
    assert clock.applied == ["base", "half"]
    assert t["half"]["speedup_wall"] == 2.0 and t["half"]["timing_rounds"] == 3
    assert (t["base"]["warmup_s"], t["half"]["warmup_s"]) == (12.0, 11.0)
    assert t["half"]["speedup_wall_min"] == t["half"]["speedup_wall_max"] == 2.0


def test_compiled_rows_report_compile_seconds(tmp_path):
    """A tiny DDPM pipeline, timed under torch.compile's `eager` backend (traces, compiles nothing)."""
    from diffusers import DDIMPipeline, DDIMScheduler

    from unetlab.testing import tiny_unet

    DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(tmp_path)
    w = user_workload(str(tmp_path))
    plain = w.unet
    rows, _ = bench_workload(
        w,
        "ddim",
        [],  # the baseline alone: each row's patches would trace graphs of their own (slow on CPU)
        None,
        None,
        True,
        None,
        steps=4,
        num_images=1,
        timing_images=1,
        repeats=2,
        seed=0,
        batch_size=1,
        compile="eager",
    )
    assert w.unet._orig_mod is plain
    timed = [r for r in rows if r["seconds_per_image"] is not None]
    assert [r["method"] for r in timed] == ["DDIM-4", "DDIM-2"]  # the baseline and half its steps
    assert all(r["compile_s"] is not None and r["warmup_s"] >= r["seconds_per_image"] for r in timed)
    settings = dict(arch="sd15", scale=1, latent_size=64, dtype="float16", baseline="ddim:4", timing_images=1)
    text = markdown({"machine": "m", "date": "d", "rows": rows, "settings": {**settings, "compile": "eager"}})
    assert "Compiled: every timing is of the UNet under torch.compile(backend='eager')" in text
    assert "full size, 64×64 latent, float16" in text and "compile s |" in text
