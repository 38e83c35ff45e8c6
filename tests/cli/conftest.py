"""Inputs of the bad-input suite: broken files, a tiny saved pipeline (whole and truncated), a tiny training run."""

import json
import shutil

import pytest
from diffusers import DDIMPipeline, DDIMScheduler

from unetlab.cli import main
from unetlab.testing import tiny_unet

RUN_ARGS = [
    "train",
    "ddpm",
    "--data",
    "digits",
    "--size",
    "8",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--sample-steps",
    "1",
    "--threads",
    "1",
    "--no-progress",
    "--seed",
    "0",
]


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """A tiny saved pipeline, a copy with a truncated weights file, a copy whose model_index.json does not parse,
    and a finished one-step `train ddpm` run."""
    root = tmp_path_factory.mktemp("inputs")
    pipe = root / "pipe"
    DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(pipe)
    truncated = root / "truncated"
    shutil.copytree(pipe, truncated)
    weights = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    badjson = root / "badjson"
    shutil.copytree(pipe, badjson)
    (badjson / "model_index.json").write_text('{"_class_name": "DDIMPipeline",')
    run = root / "run"
    assert main([*RUN_ARGS, "--out", str(run)]) == 0
    return {"pipe": pipe, "truncated": truncated, "badjson": badjson, "run": run}


@pytest.fixture
def files(tmp_path, saved):
    """Per-test input files next to the output place; returns the placeholders the cases use."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something else"}))
    (tmp_path / "keys10.json").write_text(json.dumps({"kind": "key_steps", "num_steps": 10, "key_steps": [0, 5]}))
    (tmp_path / "keys_bad.json").write_text(json.dumps({"kind": "key_steps", "num_steps": 50, "key_steps": [3, 1]}))
    plan = {"kind": "unetlab.block_skip", "version": 1, "num_inference_steps": None, "meta": {}}
    (tmp_path / "plan10.json").write_text(json.dumps({**plan, "num_inference_steps": 10, "windows": []}))
    (tmp_path / "plan_name.json").write_text(
        json.dumps({**plan, "windows": [{"component": "no_such_block", "start": 0, "end": 2, "replace": "cached"}]})
    )
    (tmp_path / "plan_missing_block.json").write_text(
        json.dumps({**plan, "windows": [{"component": "down_blocks.9", "start": 0, "end": 2, "replace": "cached"}]})
    )
    (tmp_path / "empty_out").mkdir()
    from PIL import Image

    frames = [Image.new("RGB", (24, 24), (40 * i, 0, 0)) for i in range(4)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    return {"tmp": str(tmp_path), **{k: str(v) for k, v in saved.items()}}
