"""`unetlab train clockwork`: the distillation target is the full UNet's low-resolution output, training resumes
exactly, the trained adaptor loads into clockwork, and bad input fails in one line."""

import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler
from safetensors.torch import load_file

import unetlab
from unetlab import checkpoint as ckpt
from unetlab.accel.clockwork_adaptor import ClockworkAdaptor
from unetlab.cli import main
from unetlab.loading import load
from unetlab.testing import tiny_shapes_pipeline, tiny_unet
from unetlab.train import TrainConfig, train
from unetlab.train.clockwork import ClockworkTaskConfig, make_task

TASK = dict(trajectories=3, num_inference_steps=4, eval_trajectories=1, batch=2)


@pytest.fixture(scope="module")
def ddim_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddim") / "pipe"
    DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(clip_sample=False)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "pipe"
    tiny_shapes_pipeline().save_pretrained(path)
    return path


def _cfg(out, **kw):
    return TrainConfig(
        **{
            "out": str(out),
            "steps": 4,
            "batch_size": 3,
            "lr": 1e-2,
            "warmup": 1,
            "checkpoint_every": 2,
            "progress": False,
            "seed": 0,
            **kw,
        }
    )


def test_examples_pair_each_cheap_step_with_the_full_step_before(ddim_folder):
    task = make_task(load(ddim_folder), str(ddim_folder), ClockworkTaskConfig(**TASK, clock=3))
    assert task.steps == [1, 2] and len(task.dataset) == 3 * 2 and task.bank.sample.shape[:2] == (3, 4)
    # the target and r_out^{t+1} are the deep path's output at the two steps, read by plain hooks
    unet, b = task.unet, task.bank
    keep = {}
    hook = unet.up_blocks[1].register_forward_hook(lambda m, a, out: keep.__setitem__("r", out))
    with torch.no_grad():
        unet(b.sample[1:2, 1], b.timestep[1])
        target = keep["r"]
        unet(b.sample[1:2, 0], b.timestep[0])
        prev = keep["r"]
    hook.remove()
    f = task._teacher(b, torch.tensor([1]), torch.tensor([1]))
    assert torch.allclose(f["target"], target, atol=1e-6) and torch.allclose(f["r_prev"], prev, atol=1e-6)
    assert f["r_in"].shape[1:] == (8, 16, 16) and f["text"] is None
    # an identity-initialised adaptor scores exactly the identity adaptor's error
    scores = task.evaluate({"adaptor": task.adaptor})
    assert scores["mse_ratio"] == 1.0 and scores["eval_mse"] == scores["identity_mse"] > 0


def test_training_resumes_exactly_and_the_adaptor_loads_into_clockwork(shapes_folder, tmp_path):
    cfg = ClockworkTaskConfig(**TASK)
    state = train(make_task(load(shapes_folder), str(shapes_folder), cfg), _cfg(tmp_path / "a"))
    train(make_task(load(shapes_folder), str(shapes_folder), cfg), _cfg(tmp_path / "b", steps=2))
    train(make_task(load(shapes_folder), str(shapes_folder), cfg), _cfg(tmp_path / "b", resume=True))
    last_a, last_b = ckpt.latest(tmp_path / "a"), ckpt.latest(tmp_path / "b")
    for name in ("adaptor", "ema_adaptor"):
        wa, wb = load_file(last_a / f"{name}.safetensors"), load_file(last_b / f"{name}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert state["history"][-1]["mse_ratio"] != 1.0  # it trained
    sa, sb = (json.loads((p / "state.json").read_text())["history"] for p in (last_a, last_b))
    assert sa[-1]["loss"] == sb[-1]["loss"]
    adaptor = ClockworkAdaptor.from_pretrained(last_a / "pipeline")
    assert adaptor.config.text_dim == 16 and adaptor.conv_up.weight.abs().sum() > 0
    pipe = unetlab.load(str(shapes_folder))
    with unetlab.clockwork(pipe, adaptor=tmp_path / "a") as h:  # a run folder: its latest checkpoint
        images = pipe(
            "a red circle at the top left on a blue background",
            num_inference_steps=4,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).images
        assert h.calls == [(0, True), (1, False), (2, True), (3, False)] and torch.isfinite(images).all()


def test_cli_trains_an_adaptor(ddim_folder, tmp_path):
    assert (
        main(
            [
                "train",
                "clockwork",
                "--model",
                str(ddim_folder),
                "--trajectories",
                "2",
                "--trajectory-steps",
                "3",
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path / "ok"),
            ]
        )
        == 0
    )
    saved = ckpt.latest(tmp_path / "ok") / "pipeline"
    assert ClockworkAdaptor.from_pretrained(saved).config.level == 1


def test_a_text_to_image_pipeline_records_from_the_given_prompts():
    """A plain StableDiffusionPipeline (the shipped mini-sd) records its trajectories from `prompts`."""
    cfg = ClockworkTaskConfig(**{**TASK, "trajectories": 1, "eval_trajectories": 1, "num_inference_steps": 2})
    task = make_task(load("mini-sd"), "mini-sd", cfg, ["a big red star at the center on a green plain background"])
    assert task.bank.sample.shape[:2] == (2, 2)  # guidance on: unconditional and conditional rows, two steps
