"""block_skip: empty plan == plain pipeline bit for bit, skipped forwards never run, removal restores."""

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler

import unetlab
from unetlab.accel.block_skip import BlockSkipPlan, SkipWindow
from unetlab.testing import tiny_unet
from unetlab.unet import count_flops

STEPS = 6


def _pipe():
    pipe = DDIMPipeline(unet=tiny_unet("ddpm"), scheduler=DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, seeds=(0, 1)):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(batch_size=len(seeds), generator=gens, num_inference_steps=STEPS, output_type="np").images


def test_empty_plan_is_the_plain_pipeline_bit_for_bit():
    pipe = _pipe()
    plain = _run(pipe)
    with unetlab.block_skip(pipe, BlockSkipPlan([])):
        assert np.array_equal(_run(pipe), plain)


@pytest.mark.parametrize("window", [(2, 5), (0, 3)])
def test_skipped_forward_never_runs_inside_its_window(window):
    pipe = _pipe()
    block = pipe.unet.up_blocks[1]
    plain = _run(pipe)
    calls = []
    handle = unetlab.block_skip(pipe, [SkipWindow("up_blocks.1", *window)])
    hook = block.resnets[0].register_forward_hook(lambda *a: calls.append(handle.clock.step_index))
    out = _run(pipe)
    hook.remove()
    start, end = window
    expected = [s for s in range(STEPS) if not start <= s < end or s == 0]  # step 0 runs once to fill the cache
    assert calls == expected
    assert handle.calls_skipped == len(set(range(STEPS)) - set(expected))
    assert not np.array_equal(out, plain)
    handle.remove()
    calls_after = []
    hook = block.resnets[0].register_forward_hook(lambda *a: calls_after.append(1))
    _run(pipe)
    hook.remove()
    assert len(calls_after) == STEPS


def test_removal_restores_and_second_application_raises():
    pipe = _pipe()
    plain = _run(pipe)
    plan = BlockSkipPlan([SkipWindow("mid_block", 1, 4), SkipWindow("down_blocks.2", 2, 6, "zeros")], STEPS)
    handle = unetlab.block_skip(pipe, plan)
    with pytest.raises(RuntimeError, match="block_skip"):
        unetlab.block_skip(pipe, plan)
    skipped = _run(pipe)
    assert not np.array_equal(skipped, plain)
    handle.remove()
    assert not hasattr(pipe.unet.mid_block, "_diffusers_hook")
    assert "step" not in vars(pipe.scheduler)
    assert np.array_equal(_run(pipe), plain)
    with unetlab.block_skip(pipe, plan):  # applicable again after removal
        assert np.array_equal(_run(pipe), skipped)


def test_cached_and_zeros_replacements_and_saved_flops():
    pipe = _pipe()
    cached = BlockSkipPlan([SkipWindow("up_blocks.0", 1, 6, "cached")])
    zeros = BlockSkipPlan([SkipWindow("up_blocks.0", 1, 6, "zeros")])
    flops_plain, _ = count_flops(lambda: _run(pipe, [0]))
    with unetlab.block_skip(pipe, cached):
        a = _run(pipe)
        flops_cached, _ = count_flops(lambda: _run(pipe, [0]))
    with unetlab.block_skip(pipe, zeros):
        b = _run(pipe)
    assert not np.array_equal(a, b)
    a_part = unetlab.anatomy(pipe.unet).part("up_blocks.0")
    assert flops_plain - flops_cached == 5 * a_part.flops  # five skipped calls at batch 1


def test_plan_json_round_trip_and_errors(tmp_path):
    plan = BlockSkipPlan([SkipWindow("up_blocks.2", 3, 6)], STEPS, {"note": "x"})
    path = plan.save(tmp_path / "plan.json")
    assert BlockSkipPlan.load(path) == plan
    pipe = _pipe()
    with unetlab.block_skip(pipe, str(path)) as h:
        assert h.plan == plan
    with pytest.raises(ValueError, match="num_inference_steps"):
        with unetlab.block_skip(pipe, BlockSkipPlan([], 10)):
            _run(pipe)
    with pytest.raises(ValueError, match="component"):
        SkipWindow("conv_in", 0, 2)
    with pytest.raises(ValueError, match="replace"):
        SkipWindow("mid_block", 0, 2, "mean")
    with pytest.raises(ValueError, match="window"):
        SkipWindow("mid_block", 3, 2)
    with pytest.raises(ValueError, match="overlapping"):
        BlockSkipPlan([SkipWindow("mid_block", 0, 3), SkipWindow("mid_block", 2, 4)])
    with pytest.raises(ValueError, match="up_blocks.7"):
        unetlab.block_skip(pipe, [SkipWindow("up_blocks.7", 0, 2)])
    with pytest.raises(ValueError, match="scheduler"):
        unetlab.block_skip(pipe.unet, [])
    with pytest.raises(FileNotFoundError, match="plan"):
        unetlab.block_skip(pipe, str(tmp_path / "missing.json"))
    assert "_unetlab_patches" not in vars(pipe.unet)
