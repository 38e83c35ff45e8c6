"""Check a block-skip plan by running it: output change against the plain run (same noise) and the FLOPs of a
whole sampling call counted with torch.utils.flop_counter; shrink a derived plan until it meets its budget."""

from __future__ import annotations

from ..accel.block_skip import BlockSkipPlan, block_skip
from ..metrics import image_metrics, summarize
from ..unet import count_flops
from .sampling import Sampler


def measure_plan(sampler: Sampler, plan: BlockSkipPlan, seeds=(0,)) -> dict:
    """MSE / PSNR / SSIM of the plan's outputs against the plain outputs, and FLOPs per sampling call (one sample)."""
    items = sampler.items(seeds)
    plain = sampler.run(items)
    with block_skip(sampler.unet if sampler.pipe is None else sampler.pipe, plan, scheduler=sampler.scheduler):
        skipped = sampler.run(items)
        flops_plan, _ = count_flops(lambda: sampler.run(items[:1]))
    flops_plain, _ = count_flops(lambda: sampler.run(items[:1]))
    out = summarize(image_metrics(skipped, plain))
    out.update(flops_plain=flops_plain, flops_plan=flops_plan, flops_saved_fraction=1 - flops_plan / flops_plain)
    return out


def fit_plan(sampler: Sampler, plan: BlockSkipPlan, min_psnr: float, seeds=(0,)) -> tuple[BlockSkipPlan, dict]:
    """Drop the plan's last-chosen (least efficient) windows until its measured PSNR reaches `min_psnr`."""
    windows = list(plan.windows)
    while True:
        candidate = BlockSkipPlan(windows, plan.num_inference_steps, dict(plan.meta))
        measured = measure_plan(sampler, candidate, seeds)
        if measured["psnr"] >= min_psnr or not windows:
            candidate.meta["measured"] = measured
            return candidate, measured
        windows = windows[:-1]
