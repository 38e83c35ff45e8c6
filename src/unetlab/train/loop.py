"""The one training loop of unetlab, on HF Accelerate.

Every method plugs in as a *task* (see `Task`): the loop owns the optimiser, learning-rate warm-up,
gradient clipping, EMA, the deterministic data order, the noise generator, the progress bar, periodic
atomic checkpoints, exact `resume`, and a sample grid per checkpoint; the task owns its models, its loss,
how it samples and how it saves an inference artefact (a diffusers `save_pretrained` folder).

Exactness of `resume`: the batch of step s is a pure function of (seed, s) (`batch_indices`), the loss
draws for the whole global batch from a generator seeded by (seed, s) (`draws`), any other random draw
comes from one `torch.Generator` whose state is checkpointed, and the model,
EMA and optimiser states are saved with the step; so training k steps, stopping at a checkpoint and
resuming gives the same parameters as training without a stop.

Under `accelerate launch` each process draws its own slice of the global batch (`batch_size` per process);
a task whose draws go through `draws.Draws` (DDPM, text-to-image, the evaluation classifiers) then computes
the same gradients, up to floating-point summation order, as one process with the whole global batch. The
`generator` of the other draws is seeded with the process index.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_json
from ..checkpoint import begin, clean_partial, commit, committed, read_newest
from .draws import DRAWS, step_draws
from .ema import EMA
from .grid import save_grid
from .init import init_from
from .resume import check_resume


class Task(Protocol):
    """What a training method provides to `train`.

    - `dataset`: `len(dataset)` and `dataset[LongTensor] -> dict` of tensors (moved to the device) and lists.
    - `modules() -> {name: nn.Module}`: the trained modules (optimised, EMA'd, checkpointed).
    - `loss(models, batch, generator) -> scalar tensor`: `models` are the Accelerate-prepared modules;
      every random draw uses `generator`.
    - `save(models, directory)`: write the inference artefact (e.g. a pipeline's `save_pretrained`).
    Optional: `sample(models, generator) -> (N, C, H, W) in [0, 1]`: a sample grid from `models` (EMA copies,
    eval mode), written as PNG with each checkpoint; `evaluate(models) -> {name: float}`: held-out metrics of the
    EMA copies, recorded in that checkpoint's `history` entry (the training curve); `to(device)` to move frozen
    parts (a teacher, a VAE); `uses_ema = True`: `loss` takes a fourth argument, the EMAs {name: EMA} (an EMA
    target, as in CoDi).
    """

    dataset: Any

    def modules(self) -> dict[str, nn.Module]: ...

    def loss(self, models: dict[str, nn.Module], batch: dict, generator: torch.Generator) -> torch.Tensor: ...

    def save(self, models: dict[str, nn.Module], directory: Path) -> None: ...


@dataclass
class TrainConfig:
    """Loop settings; `batch_size` is per process, `warmup` steps of linear learning-rate warm-up then cosine decay
    to `min_lr_ratio * lr` at `steps`; `init_from` (a pipeline folder or shipped name) starts a run that has no
    checkpoint yet from that pipeline's weights (fine-tuning)."""

    out: str
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep: int = 2
    seed: int = 0
    resume: bool = False
    init_from: str | None = None
    progress: bool = True
    run: dict | None = None  # what the run is (command, data, model options): `resume` refuses a different one

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "keep"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be a positive int")
        if not self.lr > 0:
            raise ValueError(f"lr: {self.lr!r} must be > 0")
        if self.warmup < 0:
            raise ValueError(f"warmup: {self.warmup!r} must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: {self.min_lr_ratio!r} must be between 0 and 1")


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> torch.Tensor:
    """Data indices of `step`: epoch-wise random permutations of range(n), seeded by (seed, epoch)."""
    if global_batch > n:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.randint(n, (global_batch,), generator=g)
    per_epoch = n // global_batch
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[pos * global_batch : (pos + 1) * global_batch]


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over `cfg.warmup` steps, then cosine decay from `cfg.lr` to `cfg.min_lr_ratio * cfg.lr`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _ema_copies(models: dict[str, nn.Module], emas: dict[str, EMA]) -> dict[str, nn.Module]:
    copies = {}
    for name, module in models.items():
        copies[name] = copy.deepcopy(module).eval()
        emas[name].copy_to(copies[name])
    return copies


def train(task: Task, cfg: TrainConfig, accelerator=None) -> dict:
    """Train `task` for `cfg.steps` optimiser steps; returns the final state (step, loss, elapsed seconds)."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    modules = task.modules()
    if hasattr(task, "to"):
        task.to(accelerator.device)
    state = {"step": 0, "elapsed_s": 0.0, "loss_avg": None, "history": []}
    held = committed(out)
    if held and not cfg.resume:
        raise ValueError(
            f"out: {out} already holds a training run ({held[0].name}); pass --resume to continue it or "
            "choose another folder"
        )
    say = print if accelerator.is_main_process else (lambda line: None)
    # the stored run is checked before its weights are read: another method's run lacks this task's files
    found = (
        read_newest(
            out,
            list(modules),
            accelerator.process_index,
            say,
            lambda stored: check_resume(stored.get("config", {}), cfg, out),
        )
        if held
        else None
    )
    if found is None and cfg.init_from is not None:
        init_from(modules, cfg.init_from)
    emas = {name: EMA(m, cfg.ema_decay) for name, m in modules.items()}
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + accelerator.process_index)

    if accelerator.is_main_process:
        clean_partial(out)
    if cfg.resume and found is None and accelerator.is_main_process:
        print(f"resume: no checkpoint in {out}; starting from step 0")
    if found is not None:
        loaded = found[1]
        state = loaded["state"]
        if state["world_size"] != accelerator.num_processes:
            raise ValueError(
                f"resume: checkpoint was written by {state['world_size']} processes, "
                f"this run has {accelerator.num_processes}"
            )
        for name, module in modules.items():
            module.load_state_dict(loaded["weights"][name])
            emas[name].load_state_dict(loaded["ema"][name], state["step"])
        optimizer.load_state_dict(loaded["optimizer"])
        generator.set_state(loaded["generator"])

    names = list(modules)
    prepared = accelerator.prepare(*modules.values(), optimizer)
    models = dict(zip(names, prepared[:-1]))
    optimizer = prepared[-1]
    for m in models.values():
        m.train()

    global_batch = cfg.batch_size * accelerator.num_processes
    rank = accelerator.process_index
    bar = tqdm(
        total=cfg.steps,
        initial=state["step"],
        disable=not (cfg.progress and accelerator.is_local_main_process),
        desc=f"train {out.name}",
        dynamic_ncols=True,
    )
    t0, loss_sum, loss_n = time.perf_counter(), 0.0, 0
    while state["step"] < cfg.steps:
        step = state["step"]
        idx = batch_indices(step, len(task.dataset), global_batch, cfg.seed)
        start, stop = rank * cfg.batch_size, (rank + 1) * cfg.batch_size
        batch = _to_device(task.dataset[idx[start:stop]], accelerator.device)
        batch[DRAWS] = step_draws(cfg.seed, step, start, stop, global_batch)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        if getattr(task, "uses_ema", False):
            loss = task.loss(models, batch, generator, emas)
        else:
            loss = task.loss(models, batch, generator)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for name in names:
            emas[name].update(accelerator.unwrap_model(models[name]))
        value = float(accelerator.reduce(loss.detach(), "mean") if accelerator.num_processes > 1 else loss.detach())
        loss_sum, loss_n = loss_sum + value, loss_n + 1
        state["loss_avg"] = value if state["loss_avg"] is None else 0.99 * state["loss_avg"] + 0.01 * value
        state["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss_avg']:.4f}", lr=f"{learning_rate(step, cfg):.2e}")
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
            state["elapsed_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            state["history"].append({"step": state["step"], "loss": loss_sum / loss_n, "elapsed_s": state["elapsed_s"]})
            loss_sum, loss_n = 0.0, 0
            _save(task, cfg, accelerator, models, emas, optimizer, generator, state)
            t0 = time.perf_counter()
    bar.close()
    return state


def _save(task, cfg, accelerator, models, emas, optimizer, generator, state) -> None:
    """Write the checkpoint of `state["step"]` (weights, EMA, optimiser, generators, EMA pipeline, sample grid)."""
    out = Path(cfg.out)
    gens = accelerator.gather(generator.get_state().unsqueeze(0).to(accelerator.device)).cpu()
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return
    unwrapped = {name: accelerator.unwrap_model(m) for name, m in models.items()}
    tmp = begin(out, state["step"])
    for name, module in unwrapped.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, tmp / f"{name}.safetensors"
        )
        save_file(
            {k: v.cpu().contiguous() for k, v in emas[name].state_dict().items()}, tmp / f"ema_{name}.safetensors"
        )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({f"rank{i}": g for i, g in enumerate(gens)}, tmp / "generators.safetensors")
    ema_models = _ema_copies(unwrapped, emas)
    task.save(ema_models, tmp / "pipeline")
    if hasattr(task, "evaluate"):
        state["history"][-1].update(task.evaluate(ema_models))
    if hasattr(task, "sample"):
        with torch.no_grad():
            images = task.sample(ema_models, torch.Generator().manual_seed(cfg.seed))
        save_grid(images, tmp / "samples.png")
        save_grid(images, out / "samples" / f"step_{state['step']:07d}.png")
    write_json(tmp / "state.json", {**state, "world_size": accelerator.num_processes, "config": asdict(cfg)})
    commit(out, tmp, state["step"], cfg.keep)
    accelerator.wait_for_everyone()
