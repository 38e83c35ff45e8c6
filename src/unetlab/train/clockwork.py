"""Distilling Clockwork's adaptor (Habibian et al. 2024, Sec. 3.2):
min E_t || r_out^t - phi(r_in^t, r_out^{t+1}, t, text) ||^2 on the model's own sampling trajectories, unrolled
from noise by the pipeline itself (prompts only, no images).

The trajectories are recorded once when the task is built: every UNet input (sample, timestep, text embedding)
of `trajectories` pipeline calls at `num_inference_steps` steps, guidance as the pipeline is called. An example
is one row of one recorded UNet call at a step the adaptor runs at (`step % clock != 0`); its loss reruns the
frozen UNet on the step before and on the step itself, in one batch, to read r_out^{t+1}, r_in^t, the time
embedding and the target r_out^t. No random draw is involved after the recording, so the loop's order of
examples fixes a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..accel.clockwork_adaptor import ClockworkAdaptor, pooled_text
from ..unet.partial import num_levels

SEED_BASE = 10_000  # trajectory seeds start here, far from the bench's image seeds (0, 1, ...)
EVAL_OFFSET = 50_000


@dataclass
class ClockworkTaskConfig:
    """`level`: the cut; `clock`: the adaptor is trained for the steps with `step % clock != 0`; `trajectories`:
    recorded pipeline calls (one image each); `num_inference_steps`/`guidance_scale` (None: the pipeline's
    default) of the recorded calls; `channels`: the adaptor's width (None: r_in's)."""

    level: int = 1
    clock: int = 2
    trajectories: int = 128
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    channels: int | None = None
    eval_trajectories: int = 8
    batch: int = 32
    seed: int = 0

    def __post_init__(self):
        for name in ("level", "trajectories", "num_inference_steps", "eval_trajectories", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if isinstance(self.clock, bool) or not isinstance(self.clock, int) or self.clock < 2:
            raise ValueError(
                f"clock: expected an int >= 2 (the adaptor runs at the steps between full ones), got {self.clock!r}"
            )
        if self.num_inference_steps < 2:
            raise ValueError(
                f"num_inference_steps: expected >= 2 (the adaptor needs a previous step), got "
                f"{self.num_inference_steps}"
            )


class Bank:
    """The recorded UNet inputs: `sample[r, k]`, `timestep[k]` and `text[r]` (None when unconditional)."""

    def __init__(self, workload, n: int, steps: int, seed: int, batch: int):
        samples, texts, timesteps = [], [], None
        calls: list[tuple] = []

        def record(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            timestep = args[1] if len(args) > 1 else kwargs["timestep"]
            calls.append(
                (
                    sample.detach().clone(),
                    torch.as_tensor(timestep).detach().clone().reshape(()),
                    kwargs.get("encoder_hidden_states"),
                )
            )

        hook = workload.unet.register_forward_pre_hook(record, with_kwargs=True)
        try:
            for start in range(0, n, batch):
                calls.clear()
                workload.generate(min(batch, n - start), steps, seed + start)
                if len(calls) != steps:
                    raise ValueError(
                        f"model: the pipeline called its UNet {len(calls)} times for {steps} steps; "
                        "the adaptor trainer needs one UNet call per step"
                    )
                samples.append(torch.stack([c[0] for c in calls], dim=1))
                texts.append(None if calls[0][2] is None else calls[0][2].detach().clone())
                ts = torch.stack([c[1] for c in calls])
                if timesteps is not None and not torch.equal(ts, timesteps):
                    raise ValueError("model: the pipeline's timesteps differ between calls")
                timesteps = ts
        finally:
            hook.remove()
        self.sample = torch.cat(samples)
        self.text = None if texts[0] is None else torch.cat(texts)
        self.timestep = timesteps

    def __len__(self) -> int:
        return len(self.sample)


class Examples:
    """`ds[idx] -> {"row", "step"}`: example i is row i // len(steps) of the bank at step steps[i % len(steps)]."""

    def __init__(self, rows: int, steps: list[int]):
        self.rows, self.steps = rows, torch.tensor(steps)

    def __len__(self) -> int:
        return self.rows * len(self.steps)

    def __getitem__(self, idx: torch.Tensor) -> dict:
        idx = torch.as_tensor(idx).reshape(-1)
        return {"row": idx // len(self.steps), "step": self.steps[idx % len(self.steps)]}


class Features:
    """Reads, during one forward of the frozen `unet`, r_in (the input of `down_blocks[level-1]`'s downsampler),
    the time embedding `temb` passed to `down_blocks[level]` and r_out (the output of `up_blocks[n-level-1]`)."""

    def __init__(self, unet, level: int):
        self.unet, self.values = unet, {}
        down, deep = unet.down_blocks[level - 1].downsamplers[0], unet.down_blocks[level]
        last = unet.up_blocks[num_levels(unet) - level - 1]
        self._hooks = [
            down.register_forward_pre_hook(
                lambda m, a, k: self._keep("r_in", a[0] if a else k["hidden_states"]), with_kwargs=True
            ),
            deep.register_forward_pre_hook(
                lambda m, a, k: self._keep("temb", k["temb"] if "temb" in k else a[1]), with_kwargs=True
            ),
            last.register_forward_hook(lambda m, a, out: self._keep("r_out", out)),
        ]

    def _keep(self, name, value):
        self.values[name] = value

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor | None) -> dict:
        self.values = {}
        kwargs = {} if text is None else {"encoder_hidden_states": text}
        self.unet(sample, timestep, **kwargs)
        return dict(self.values)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


class ClockworkTask:
    """The adaptor of `pipe`'s UNet at `cfg.level`, distilled on the trajectories of `workload` (a
    `eval.workload.Workload`: pipeline, prompts (image i of a call from seed s gets prompt (s + i) % len),
    guidance); the held-out evaluation set comes from `eval_workload` (default: `workload`) at other seeds."""

    def __init__(self, workload, cfg: ClockworkTaskConfig, eval_workload=None):
        self.cfg = cfg
        self.unet = workload.unet.eval().requires_grad_(False)
        eval_workload = eval_workload or workload
        if cfg.guidance_scale is not None:
            workload.guidance_scale = eval_workload.guidance_scale = cfg.guidance_scale
        self.adaptor = ClockworkAdaptor.from_unet(self.unet, cfg.level, cfg.channels, seed=cfg.seed)
        self.features = Features(self.unet, cfg.level)
        seed = SEED_BASE + 100_000 * cfg.seed
        self.steps = [k for k in range(1, cfg.num_inference_steps) if k % cfg.clock]
        self.bank = Bank(workload, cfg.trajectories, cfg.num_inference_steps, seed, cfg.batch)
        self.dataset = Examples(len(self.bank), self.steps)
        eval_bank = Bank(eval_workload, cfg.eval_trajectories, cfg.num_inference_steps, seed + EVAL_OFFSET, cfg.batch)
        self.eval_set = [
            self._teacher(eval_bank, **Examples(len(eval_bank), self.steps)[i])
            for i in torch.arange(len(Examples(len(eval_bank), self.steps))).split(cfg.batch)
        ]

    def modules(self) -> dict:
        return {"adaptor": self.adaptor}

    def to(self, device) -> None:
        self.unet.to(device)

    def _teacher(self, bank: Bank, row: torch.Tensor, step: torch.Tensor) -> dict:
        """r_in^t, temb^t, the pooled text, r_out^{t+1} and the target r_out^t of examples (row, step)."""
        device = self.unet.device
        row, step = row.cpu(), step.cpu()
        b = len(row)
        sample = torch.cat([bank.sample[row, step - 1], bank.sample[row, step]]).to(device)
        timestep = torch.cat([bank.timestep[step - 1], bank.timestep[step]]).to(device)
        text = None if bank.text is None else bank.text[row].to(device)
        f = self.features(sample, timestep, None if text is None else torch.cat([text, text]))
        return {
            "r_in": f["r_in"][b:],
            "temb": f["temb"][b:],
            "text": pooled_text(text),
            "r_prev": f["r_out"][:b],
            "target": f["r_out"][b:],
        }

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """|| r_out^t - phi(r_in^t, r_out^{t+1}, t, text) ||^2, the mean over elements (Sec. 3.2)."""
        f = self._teacher(self.bank, batch["row"], batch["step"])
        phi = models["adaptor"](f["r_in"], f["r_prev"], f["temb"], f["text"])
        return F.mse_loss(phi, f["target"])

    @torch.no_grad()
    def evaluate(self, models: dict) -> dict:
        """On held-out trajectories: the adaptor's mean squared error, the identity adaptor's, and their ratio."""
        err = ident = 0.0
        for f in self.eval_set:
            phi = models["adaptor"](f["r_in"], f["r_prev"], f["temb"], f["text"])
            err += float(((phi - f["target"]) ** 2).sum())
            ident += float(((f["r_prev"] - f["target"]) ** 2).sum())
        n = sum(f["target"].numel() for f in self.eval_set)
        return {"eval_mse": err / n, "identity_mse": ident / n, "mse_ratio": err / ident}

    def save(self, models: dict, directory: Path) -> None:
        models["adaptor"].save_pretrained(directory)


def shapes_captions(n: int, seed: int, split: str = "train") -> list[str]:
    """`n` captions of the shapes caption grammar over the attribute combinations of `split`, drawn from `seed`."""
    from ..data.shapes import ATTRIBUTES, caption, split_combinations

    combos = split_combinations(split)
    picks = torch.randint(len(combos), (n,), generator=torch.Generator().manual_seed(seed))
    return [caption(*(ATTRIBUTES[key][int(v)] for key, v in zip(ATTRIBUTES, combos[i]))) for i in picks]


def make_task(pipe, model: str, cfg: ClockworkTaskConfig, prompts: list[str] | None = None) -> ClockworkTask:
    """The task for `pipe` (loaded from `model`: "digits", "shapes" or a pipeline folder): unconditional pipelines
    from noise only, `ShapesPipeline`s from prompts of the shapes caption grammar (train combinations; held-out ones
    for the evaluation), any other text-to-image pipeline from `prompts`."""
    import inspect

    from ..eval.workload import Workload
    from ..models import ShapesPipeline

    params = inspect.signature(pipe.__call__).parameters
    required = [
        n for n, p in params.items() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise ValueError(
            f"model: {model} is a {type(pipe).__name__}, whose calls need {', '.join(required)}; clockwork records "
            "the sampling of an unconditional or text-to-image pipeline"
        )
    if cfg.guidance_scale is not None and "guidance_scale" not in params:
        raise ValueError(f"guidance_scale: {model} ({type(pipe).__name__}) takes no guidance; leave it unset")
    takes_prompt = "prompt" in params
    if not takes_prompt:
        if prompts:
            raise ValueError(f"prompts: {model} is unconditional; it takes no prompts")
        return ClockworkTask(Workload(str(model), pipe, None, None, call_kwargs={"output_type": "np"}), cfg)
    if prompts is None:
        if not isinstance(pipe, ShapesPipeline):
            raise ValueError(f"prompts: {model} is text-conditional; give prompts (--prompts FILE, one a line)")
        train, held = (
            shapes_captions(cfg.trajectories, cfg.seed),
            shapes_captions(cfg.eval_trajectories, cfg.seed, "heldout"),
        )
    elif not prompts:
        raise ValueError("prompts: the list is empty")
    else:
        train, held = prompts, prompts
    kwargs = {"output_type": "np"}  # arrays, not PIL images, from every text-to-image pipeline
    return ClockworkTask(
        Workload(str(model), pipe, train, None, call_kwargs=kwargs),
        cfg,
        Workload(str(model), pipe, held, None, call_kwargs=kwargs),
    )
