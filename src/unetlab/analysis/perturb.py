"""Sensitivity of the final output to Gaussian noise in one resolution level's features at every step
(Clockwork, Habibian et al. 2023, arXiv 2312.08128, Sec. 3: low-resolution features tolerate perturbation).

At level r, every down/mid/up block output and every skip tensor of spatial height r becomes
x + sigma * std(x) * eps, eps ~ N(0, I) drawn from a generator reseeded at the start of each sampling call.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import write_json
from ..metrics import image_metrics, summarize
from ..unet import encode, example_inputs
from .sampling import Sampler
from .shard import chunk_size, map_chunks
from .taps import Taps, main_tensor, with_main


def resolution_levels(unet) -> list[int]:
    """Distinct feature heights of the skip tensors and the bottleneck, highest resolution first."""
    x, cond = example_inputs(unet, 1, seq_len=4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = encode(unet, x, 500, **cond)
    return sorted({s.shape[-2] for s in state.skips} | {state.mid.shape[-2]}, reverse=True)


@contextmanager
def perturbation(unet, scheduler, resolution: int, sigma: float, noise_seed: int = 0):
    """Hooks adding relative Gaussian noise of scale `sigma` to all features of height `resolution`."""
    if sigma < 0:
        raise ValueError(f"sigma: expected a non-negative relative noise scale, got {sigma}")
    generator = torch.Generator()

    def noisy(x: torch.Tensor):
        if x.ndim != 4 or x.shape[-2] != resolution:
            return None
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
        return x + sigma * x.flatten(1).float().std(1).to(x.dtype).view(-1, 1, 1, 1) * eps

    def on_part(name, step, out):
        if name in ("stem", "head"):
            return None
        new = noisy(main_tensor(out))
        return None if new is None else with_main(out, new)

    taps = Taps(
        unet,
        scheduler,
        on_part=on_part,
        on_skip=lambda k, step, x: noisy(x),
        on_start=lambda: generator.manual_seed(noise_seed),
    )
    try:
        yield
    finally:
        taps.remove()


@dataclass
class Sensitivity:
    """cells["resolution@sigma"] = output change summary against the unperturbed run."""

    levels: list[int]
    sigmas: list[float]
    cells: dict
    meta: dict = field(default_factory=dict)

    def cell(self, level: int, sigma: float) -> dict:
        return self.cells[f"{level}@{sigma:g}"]

    def matrix(self, metric: str = "mse") -> list[list[float]]:
        """levels x sigmas values of `metric`."""
        return [[self.cell(r, s)[metric] for s in self.sigmas] for r in self.levels]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> Path:
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path) -> Sensitivity:
        return cls(**json.loads(Path(path).read_text()))


def perturb(
    pipe_or_unet,
    sigmas=(0.1, 0.3, 1.0),
    levels=None,
    seeds=(0,),
    prompts_or_batch=None,
    num_inference_steps: int = 20,
    guidance_scale: float | None = None,
    noise_seed: int = 0,
    batch_size: int | None = None,
    scheduler=None,
    progress: bool = True,
    accelerator=None,
) -> Sensitivity:
    """Output change (MSE, PSNR, SSIM against the clean run, same noise) per resolution level and sigma; under
    `accelerate launch`, pass the `accelerator` to share the sampling chunks among the processes."""
    sampler = Sampler(pipe_or_unet, prompts_or_batch, num_inference_steps, guidance_scale, scheduler)
    valid = resolution_levels(sampler.unet)
    levels = list(levels) if levels is not None else valid
    bad = [r for r in levels if r not in valid]
    if bad:
        raise ValueError(f"levels: {bad} are not feature heights of this UNet; valid: {valid}")
    sigmas = [float(s) for s in sigmas]
    if not sigmas or min(sigmas) < 0:
        raise ValueError(f"sigmas: expected non-negative relative noise scales, got {sigmas}")
    items = sampler.items(seeds)
    batch_size = chunk_size(batch_size, len(items), accelerator)
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    clean = map_chunks(sampler.run, chunks, accelerator)
    cells = {}
    for r, s in tqdm([(r, s) for r in levels for s in sigmas], desc="perturb", disable=not progress):
        outs = []
        with perturbation(sampler.unet, sampler.scheduler, r, s, noise_seed):
            outs = map_chunks(sampler.run, chunks, accelerator)
        per_sample = [image_metrics(a, b) for a, b in zip(outs, clean)]
        cells[f"{r}@{s:g}"] = summarize({m: torch.cat([p[m] for p in per_sample]) for m in per_sample[0]})
    meta = dict(
        num_inference_steps=num_inference_steps,
        seeds=[int(x) for x in seeds],
        samples=len(items),
        noise_seed=noise_seed,
        guidance_scale=guidance_scale,
        model_class=type(sampler.unet).__name__,
    )
    return Sensitivity(levels, sigmas, cells, meta)
