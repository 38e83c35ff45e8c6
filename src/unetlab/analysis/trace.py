"""Trace every UNet part across the sampling steps: change to the previous step, norm and spectrum, online.

Memory holds one previous tensor per (part, guided half) and scalar statistics per step; mean and spread are
over all (prompt, seed) samples, accumulated batch by batch.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import write_json
from .sampling import Sampler
from .shard import chunk_size
from .stats import CHANGE_METRICS, METRICS, Running, change_metrics, state_metrics
from .taps import Taps, main_tensor

KINDS = {
    "stem": "stem",
    "down_blocks": "encoder",
    "skip": "skip",
    "mid_block": "bottleneck",
    "up_blocks": "decoder",
    "head": "head",
}


def part_kind(name: str) -> str:
    """stem | encoder | skip | bottleneck | decoder | head, from a part name."""
    return KINDS[name.split(".")[0]]


@dataclass
class TraceResult:
    """metrics[half][part][metric] = {"mean": [per step], "std": [...], "count": [...]}."""

    parts: list[str]
    resolutions: dict[str, list[int]]
    steps: list[int]
    timesteps: list[float]
    log_snr: list[float]
    halves: list[str]
    metrics: dict
    meta: dict = field(default_factory=dict)

    @property
    def default_half(self) -> str:
        return "cond" if "cond" in self.halves else self.halves[0]

    def parts_of(self, kind: str) -> list[str]:
        return [p for p in self.parts if part_kind(p) == kind]

    def curve(self, part: str, metric: str = "mse", half: str | None = None, stat: str = "mean") -> list[float]:
        half = half or self.default_half
        if half not in self.metrics:
            raise ValueError(f"half: {half!r} not traced; traced: {', '.join(self.halves)}")
        if part not in self.metrics[half]:
            raise ValueError(f"part: {part!r} not traced; traced: {', '.join(self.parts)}")
        if metric not in METRICS:
            raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
        return self.metrics[half][part][metric][stat]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> Path:
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path) -> TraceResult:
        return cls(**json.loads(Path(path).read_text()))


def split_halves(x: torch.Tensor, n: int) -> list[tuple[str, torch.Tensor]]:
    """[uncond, cond] halves when the batch is twice the number of samples (classifier-free guidance)."""
    if x.shape[0] == 2 * n:
        return [("uncond", x[:n]), ("cond", x[n:])]
    return [("all", x)]


def trace(
    pipe_or_unet,
    prompts_or_batch=None,
    num_inference_steps: int = 20,
    seeds=(0,),
    guidance_scale: float | None = None,
    batch_size: int | None = None,
    scheduler=None,
    progress: bool = True,
    accelerator=None,
) -> TraceResult:
    """Per part and step: MSE, relative L1 and cosine to the previous step, channel-mean Frobenius norm, and
    low-frequency energy share; mean and spread over (prompt, seed) samples, guided halves apart. Under
    `accelerate launch`, pass the `accelerator` to share the sampling chunks among the processes."""
    sampler = Sampler(pipe_or_unet, prompts_or_batch, num_inference_steps, guidance_scale, scheduler)
    items = sampler.items(seeds)
    timesteps, log_snr = sampler.timesteps_and_log_snr()
    batch_size = chunk_size(batch_size, len(items), accelerator)
    stats: dict[tuple[str, str, str], Running] = defaultdict(Running)
    prev: dict[tuple[str, str], torch.Tensor] = {}
    resolutions: dict[str, list[int]] = {}
    order: list[str] = []
    halves: list[str] = []
    n_batch = [0]

    def observe(name: str, step: int, x: torch.Tensor) -> None:
        if name not in resolutions:
            resolutions[name] = list(x.shape[2:])
            order.append(name)
        for half, xh in split_halves(x, n_batch[0]):
            if half not in halves:
                halves.append(half)
            for metric, v in state_metrics(xh).items():
                stats[(half, name, metric)].update(step, v)
            p = prev.get((half, name))
            if p is not None and p.shape == xh.shape:
                for metric, v in change_metrics(xh, p).items():
                    stats[(half, name, metric)].update(step, v)
            prev[(half, name)] = xh.detach().clone()

    def on_part(name, step, out):
        observe(name, step, main_tensor(out))

    def on_skip(k, step, x):
        observe(f"skip.{k}", step, x)

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    multi = accelerator is not None and accelerator.num_processes > 1
    if multi:
        with accelerator.split_between_processes(chunks) as mine:
            chunks = list(mine)
    with Taps(sampler.unet, sampler.scheduler, on_part, on_skip, on_start=prev.clear):
        for chunk in tqdm(chunks, desc="trace", disable=not progress):
            n_batch[0] = len(chunk)
            sampler.run(chunk)
    if multi:
        stats, resolutions, order, halves = _gather(stats, resolutions, order, halves)

    order.sort(key=_part_order)
    n = len(timesteps)
    metrics = {h: {p: {m: stats[(h, p, m)].to_dict(n) for m in METRICS} for p in order} for h in halves}
    meta = dict(
        num_inference_steps=num_inference_steps,
        seeds=[int(s) for s in seeds],
        samples=len(items),
        guidance_scale=guidance_scale,
        model_class=type(sampler.unet).__name__,
        scheduler=type(sampler.scheduler).__name__,
    )
    return TraceResult(order, resolutions, list(range(n)), timesteps, log_snr, halves, metrics, meta)


def _gather(stats, resolutions, order, halves):
    """The statistics of all processes, merged in process order, and the union of the parts and halves seen."""
    from accelerate.utils import gather_object

    merged: dict = defaultdict(Running)
    res, parts, hs = {}, [], []
    for s, r, o, h in gather_object([(dict(stats), resolutions, order, halves)]):
        for key, running in s.items():
            merged[key].merge(running)
        res.update(r)
        parts += [p for p in o if p not in parts]
        hs += [x for x in h if x not in hs]
    return merged, res, parts, hs


def _part_order(name: str) -> tuple:
    """stem, down blocks, skips, mid block, up blocks, head; numbered parts by number."""
    rank = ["stem", "down_blocks", "skip", "mid_block", "up_blocks", "head"].index(name.split(".")[0])
    return (rank, int(name.split(".")[1]) if "." in name else 0)


def mean_change(result: TraceResult, kind: str, metric: str = "mse", half: str | None = None) -> float:
    """Mean over steps 1..N-1 and over the parts of `kind` of the adjacent-step `metric`."""
    if metric not in CHANGE_METRICS:
        raise ValueError(f"metric: {metric!r} is not a change metric ({', '.join(CHANGE_METRICS)})")
    parts = result.parts_of(kind)
    if not parts:
        raise ValueError(f"kind: no traced parts of kind {kind!r}")
    values = [v for p in parts for v in result.curve(p, metric, half)[1:] if not math.isnan(v)]
    return sum(values) / len(values)


def decoder_encoder_ratio(result: TraceResult, metric: str = "mse", half: str | None = None) -> float:
    """Mean adjacent-step change of the up blocks over that of the down blocks (Faster Diffusion, Sec. 3.2)."""
    return mean_change(result, "decoder", metric, half) / mean_change(result, "encoder", metric, half)
