"""One sampling run for analysis: a diffusers pipeline called normally, or a bare UNet in a minimal DDIM loop.

Every (prompt or label, seed) pair is one sample; each sample's noise comes from its own
`torch.Generator(seed)`, so a sample is the same whether it is drawn alone or in a batch, ablated or not.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from diffusers import DDIMScheduler

from ..patching import resolve
from ..unet import example_inputs


class Sampler:
    """Draws final outputs in [0, 1] as (n, C, H, W) float32 for lists of seeds, with a fixed conditioning."""

    def __init__(
        self,
        pipe_or_unet,
        prompts_or_batch=None,
        num_inference_steps: int = 20,
        guidance_scale: float | None = None,
        scheduler=None,
    ):
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: expected a positive int, got {num_inference_steps!r}")
        self.pipe, self.unet = resolve(pipe_or_unet)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        if self.pipe is not None:
            self.scheduler = self.pipe.scheduler
            params = inspect.signature(self.pipe.__call__).parameters
            self.cond_arg = next((a for a in ("prompt", "class_labels") if a in params), None)
            if prompts_or_batch is not None and self.cond_arg is None:
                raise ValueError(f"prompts_or_batch: {type(self.pipe).__name__} takes no prompt or class labels")
            self.conds = (
                list(prompts_or_batch)
                if isinstance(prompts_or_batch, (list, tuple))
                else ([prompts_or_batch] if prompts_or_batch is not None else [None])
            )
            self.pipe.set_progress_bar_config(disable=True)
        else:
            self.scheduler = scheduler or DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
            if prompts_or_batch is not None and not isinstance(prompts_or_batch, dict):
                raise TypeError(
                    "prompts_or_batch: for a bare UNet, expected a dict of forward kwargs "
                    "(e.g. encoder_hidden_states) with batch 1, or None"
                )
            if prompts_or_batch is None:
                _, prompts_or_batch = example_inputs(
                    self.unet, 1, seq_len=8, generator=torch.Generator().manual_seed(0)
                )
            self.cond = prompts_or_batch
            self.conds = [None]

    def items(self, seeds) -> list[tuple]:
        """The (conditioning, seed) pairs of a run over `seeds`: every conditioning with every seed."""
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds: expected at least one seed")
        return [(c, s) for c in self.conds for s in seeds]

    def timesteps_and_log_snr(self) -> tuple[list[float], list[float]]:
        """The run's timesteps and their log-SNR log(alpha_bar / (1 - alpha_bar)) from scheduler.alphas_cumprod."""
        self.scheduler.set_timesteps(self.num_inference_steps)
        ts = self.scheduler.timesteps.detach().cpu().tolist()
        ac = getattr(self.scheduler, "alphas_cumprod", None)
        log_snr = []
        for t in ts:
            if ac is None:
                log_snr.append(float("nan"))
                continue
            a = float(ac[min(int(round(t)), len(ac) - 1)])
            log_snr.append(math.log(a / (1 - a)) if 0 < a < 1 else float("nan"))
        return ts, log_snr

    @torch.no_grad()
    def run(self, items) -> torch.Tensor:
        """Final outputs for `items` from `items(seeds)`, as float32 (n, C, H, W) in [0, 1]."""
        generators = [torch.Generator().manual_seed(s) for _, s in items]
        if self.pipe is None:
            return self._loop(generators)
        kwargs = dict(num_inference_steps=self.num_inference_steps, generator=generators, output_type="np")
        if self.cond_arg is not None and items[0][0] is not None:
            kwargs[self.cond_arg] = [c for c, _ in items]
        else:
            kwargs["batch_size"] = len(items)
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        images = self.pipe(**kwargs).images
        images = torch.from_numpy(np.asarray(images, dtype=np.float32))
        return images.permute(0, 3, 1, 2).contiguous() if images.ndim == 4 else images[:, None]

    def _loop(self, generators) -> torch.Tensor:
        """DDIM (eta = 0) with the sampler's scheduler; output (x0 + 1) / 2 clamped to [0, 1]."""
        unet, sched = self.unet, self.scheduler
        p = next(unet.parameters())
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        x = torch.cat([torch.randn(1, unet.config.in_channels, h, w, generator=g) for g in generators]).to(p)
        n = x.shape[0]
        cond = _expand(self.cond, n)
        sched.set_timesteps(self.num_inference_steps)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            eps = unet(sched.scale_model_input(x, t), t, **cond).sample
            x = sched.step(eps, t, x).prev_sample
        return (x.float() / 2 + 0.5).clamp(0, 1).cpu()


def _expand(cond, n: int):
    """Expand batch-1 tensors in a (nested dict of) forward kwargs to batch n."""
    if isinstance(cond, dict):
        return {k: _expand(v, n) for k, v in cond.items()}
    if torch.is_tensor(cond) and cond.ndim > 0 and cond.shape[0] == 1:
        return cond.expand(n, *cond.shape[1:])
    return cond
