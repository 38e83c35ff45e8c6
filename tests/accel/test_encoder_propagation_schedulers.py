"""Encoder propagation with every scheduler a user would pick, on a tiny Stable Diffusion pipeline."""

import importlib

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

import unetlab
from helpers.ep_pipelines import build, call, in_float64, reference
from unetlab.schedules import resolve

ep_module = importlib.import_module("unetlab.accel.encoder_propagation")  # unetlab.accel re-exports a function

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, dict(skip_prk_steps=True)),
    "ddpm": (DDPMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_ancestral": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp_sde": (DPMSolverMultistepScheduler, dict(algorithm_type="sde-dpmsolver++")),
    "unipc": (UniPCMultistepScheduler, {}),
    "lcm": (LCMScheduler, {}),
}
STEPS = 8


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build("sd", tmp_path_factory.mktemp("sd"))


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler(sd, name, monkeypatch):
    pipe, kw = sd
    cls, cfg = SCHEDULERS[name]
    original = pipe.scheduler
    pipe.scheduler = cls.from_config(original.config, **cfg)
    try:
        base = call(pipe, kw, STEPS)
        other_seed = call(pipe, kw, STEPS, seed=1)
        with unetlab.encoder_propagation(pipe, key_steps="all", noise_injection=None):
            assert torch.equal(call(pipe, kw, STEPS), base)
        num_steps = len(pipe.scheduler.timesteps)  # Heun: 2 * STEPS - 1 model calls, PNDM: STEPS + 1
        keys = resolve("adaptive", num_steps)[::2]  # a sparser, paper-like front-loaded set
        assert len(keys) < num_steps / 2

        with reference(pipe, keys):
            ref = call(pipe, kw, STEPS)
        with unetlab.encoder_propagation(pipe, key_steps=keys, parallel=False):
            seq = call(pipe, kw, STEPS)
        assert torch.equal(seq, ref)
        seen = []
        real = ep_module.decode
        monkeypatch.setattr(
            ep_module,
            "decode",
            lambda u, s, ts: (seen.extend(float(torch.as_tensor(t)) for t in ts), real(u, s, ts))[1],
        )
        with in_float64(pipe, kw) as kw64:
            with unetlab.encoder_propagation(pipe, key_steps=keys, parallel=True):
                par = call(pipe, kw64, STEPS)
            # every model call got its own timestep (repeated ones for Heun), each decoded exactly once
            assert seen == pipe.scheduler.timesteps.tolist()
            monkeypatch.undo()
            with unetlab.encoder_propagation(pipe, key_steps=keys, parallel=False):
                seq64 = call(pipe, kw64, STEPS)
        assert _rel(par, seq64) < 1e-10
        # the method changes the sample only a little: much less than another seed does
        assert 0 < (seq - base).norm() < 0.5 * (other_seed - base).norm()
    finally:
        pipe.scheduler = original
