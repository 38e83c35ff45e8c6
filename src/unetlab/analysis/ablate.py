"""Causal ablation grid: eliminate one component inside one window of steps, sample with the same noise, and
measure the change of the final output (Prasad et al. 2023, "Unraveling the temporal dynamics of the UNet").

A block's output is replaced ("zeros", "cached" = its output at the last step it ran outside the window,
"mean" = its per-channel spatial mean) or its resnets are bypassed ("bypass": each resnet returns its shortcut);
a skip connection's tensor is replaced as the up block receives it. Shapes never change.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..accel.block_skip import block_components, map_tensors
from ..accel.config import read_json
from ..atomic import write_json
from ..eval import model_accuracy
from ..metrics import image_metrics, summarize
from .sampling import Sampler
from .shard import chunk_size, map_chunks
from .taps import Taps, skip_wiring

REPLACES = ("zeros", "cached", "mean", "bypass")


def components_of(unet) -> list[str]:
    """Every ablatable component: down blocks, mid block, up blocks, then skip connections skip.0 .. skip.K-1."""
    n_skips = sum(len(w) for w in skip_wiring(unet))
    return block_components(unet) + [f"skip.{k}" for k in range(n_skips)]


def make_windows(windows, num_inference_steps: int) -> list[tuple[int, int]]:
    """k equal windows covering the steps, or a validated list of sorted, non-overlapping [start, end) pairs."""
    n = num_inference_steps
    if isinstance(windows, int):
        if not 1 <= windows <= n:
            raise ValueError(f"windows: expected 1 <= k <= num_inference_steps={n}, got {windows}")
        edges = [round(i * n / windows) for i in range(windows + 1)]
        return list(zip(edges[:-1], edges[1:]))
    out = []
    for w in windows:
        if len(w) != 2 or not all(isinstance(v, int) for v in w) or not 0 <= w[0] <= w[1] <= n:
            raise ValueError(f"windows: expected [start, end) int pairs with 0 <= start <= end <= {n}, got {w!r}")
        if out and w[0] < out[-1][1]:
            raise ValueError(f"windows: {tuple(w)} overlaps or precedes {out[-1]}; give sorted, disjoint windows")
        out.append((w[0], w[1]))
    if not out:
        raise ValueError("windows: expected an int k or at least one (start, end) pair")
    return out


def _check(unet, component: str, replace: str) -> None:
    valid = components_of(unet)
    if component not in valid:
        raise ValueError(f"component: {component!r} is not one of {', '.join(valid)}")
    if replace not in REPLACES:
        raise ValueError(f"replace: {replace!r} is not one of {', '.join(REPLACES)}")
    if replace == "bypass" and component.startswith("skip."):
        raise ValueError(f"replace: 'bypass' applies to blocks with resnets, not to the skip connection {component}")


def _replacer(replace: str, window: tuple[int, int]):
    """f(step, value) -> replacement or None, keeping the 'cached' value of the last step outside the window."""
    cache = {}

    def f(step: int, value):
        inside = window[0] <= step < window[1]
        if replace == "cached":
            if inside and "v" in cache:
                return cache["v"]
            cache["v"] = value
            return None
        if not inside:
            return None
        if replace == "zeros":
            return map_tensors(value, torch.zeros_like)
        return map_tensors(value, lambda t: t.mean((2, 3), keepdim=True).expand_as(t) if t.ndim == 4 else t)

    return f, cache.clear


def _shortcut(resnet, args):
    """A ResnetBlock2D with its residual branch removed: (shortcut of the input) / output_scale_factor."""
    x = args[0]
    if resnet.upsample is not None:
        x = resnet.upsample(x)
    elif resnet.downsample is not None:
        x = resnet.downsample(x)
    if resnet.conv_shortcut is not None:
        x = resnet.conv_shortcut(x)
    return x / resnet.output_scale_factor


@contextmanager
def ablation(unet, scheduler, component: str, window: tuple[int, int], replace: str = "zeros"):
    """Hooks that eliminate `component` at steps window[0] <= i < window[1] of every call while active."""
    _check(unet, component, replace)
    if replace == "bypass":
        taps = Taps(unet, scheduler)
        block = unet.get_submodule(component)
        handles = [
            r.register_forward_hook(
                lambda m, args, out: _shortcut(m, args) if window[0] <= taps.clock.step_index < window[1] else None
            )
            for r in block.resnets
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            taps.remove()
        return
    f, reset = _replacer(replace, window)
    if component.startswith("skip."):
        k = int(component.split(".")[1])
        taps = Taps(unet, scheduler, on_skip=lambda i, step, x: f(step, x) if i == k else None, on_start=reset)
    else:
        taps = Taps(
            unet, scheduler, on_part=lambda name, step, out: f(step, out) if name == component else None, on_start=reset
        )
    try:
        yield
    finally:
        taps.remove()


def ablated_sample(sampler: Sampler, items, component: str, window, replace: str = "zeros") -> torch.Tensor:
    """Final outputs for `items` with `component` eliminated inside `window`."""
    with ablation(sampler.unet, sampler.scheduler, component, tuple(window), replace):
        return sampler.run(items)


@dataclass
class AblationGrid:
    """cells["component@start-end"] = {metric: mean, metric + "_std": spread}; baseline = the unablated quality."""

    components: list[str]
    windows: list[list[int]]
    replace: str
    cells: dict
    baseline: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def cell(self, component: str, window) -> dict:
        return self.cells[cell_key(component, window)]

    def matrix(self, metric: str = "psnr") -> list[list[float]]:
        """components x windows values of `metric`."""
        return [[self.cell(c, w)[metric] for w in self.windows] for c in self.components]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> Path:
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path) -> AblationGrid:
        return cls(**json.loads(Path(path).read_text()))


def cell_key(component: str, window) -> str:
    return f"{component}@{window[0]}-{window[1]}"


def ablate(
    pipe_or_unet,
    components=None,
    windows=4,
    replace: str = "zeros",
    seeds=(0,),
    prompts_or_batch=None,
    num_inference_steps: int = 20,
    guidance_scale: float | None = None,
    out_dir=None,
    model_name: str | None = None,
    batch_size: int | None = None,
    scheduler=None,
    progress: bool = True,
    accelerator=None,
) -> AblationGrid:
    """For each (component, window) cell: MSE, PSNR, SSIM of the final output against the unablated run with the
    same noise, and `unetlab.eval.accuracy` results ("quality.*") when `model_name` names a shipped classifier; cells
    are cached in `out_dir/ablation_cells` and reused on rerun. Under `accelerate launch`, pass the
    `accelerator` to share the sampling chunks among the processes."""
    sampler = Sampler(pipe_or_unet, prompts_or_batch, num_inference_steps, guidance_scale, scheduler)
    components = list(components) if components is not None else components_of(sampler.unet)
    if not components:
        raise ValueError("components: expected at least one component")
    for c in components:
        _check(sampler.unet, c, replace)
    wins = make_windows(windows, num_inference_steps)
    items = sampler.items(seeds)
    batch_size = chunk_size(batch_size, len(items), accelerator)
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    config = dict(
        replace=replace,
        num_inference_steps=num_inference_steps,
        seeds=[int(s) for s in seeds],
        conds=[str(c) for c in sampler.conds],
        guidance_scale=guidance_scale,
        model=fingerprint(sampler.unet),
        quality_model=model_name,
    )
    baselines = map_chunks(sampler.run, chunks, accelerator)
    labels = [c for c, _ in items]
    baseline = model_accuracy(model_name, torch.cat(baselines), labels) if model_name is not None else None
    baseline = baseline or {}
    cache_dir = Path(out_dir) / "ablation_cells" if out_dir is not None else None
    cells = {}
    todo = [(c, w) for c in components for w in wins]
    for c, w in tqdm(todo, desc=f"ablate ({replace})", disable=not progress):
        key = cell_key(c, w)
        path = cache_dir / f"{key}.json" if cache_dir is not None else None
        if path is not None and path.is_file():
            saved = read_json(path, "ablation cell")
            if isinstance(saved, dict) and saved.get("config") == config:
                cells[key] = saved["metrics"]
                continue
        images = map_chunks(lambda chunk, c=c, w=w: ablated_sample(sampler, chunk, c, w, replace), chunks, accelerator)
        per_sample = [image_metrics(a, b) for a, b in zip(images, baselines)]
        metrics = summarize({m: torch.cat([p[m] for p in per_sample]) for m in per_sample[0]})
        if baseline:
            metrics.update(model_accuracy(model_name, torch.cat(images), labels) or {})
        cells[key] = metrics
        if path is not None:
            write_json(path, {"config": config, "metrics": metrics}, indent=1)
    meta = dict(config, samples=len(items), model_class=type(sampler.unet).__name__)
    return AblationGrid(components, [list(w) for w in wins], replace, cells, baseline, meta)


def fingerprint(unet) -> str:
    """Class, config and a weight checksum, so that cached cells are reused only for the same model."""
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in unet.parameters())
    public = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}  # "_use_default_values": set order
    config = hashlib.sha1(json.dumps(public, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{type(unet).__name__}:{config}:{checksum:.10e}"
