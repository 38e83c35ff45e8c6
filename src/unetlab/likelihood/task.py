"""VDM / DiffEnc as a task of unetlab's training loop: the loss is the bound in bits per dimension."""

from __future__ import annotations

from pathlib import Path

import torch

from ..vdm.bpd import evaluate_bpd, mean_of_passes
from ..vdm.sampler import ancestral_sample
from ..vdm.terms import images_to_x, nats_to_bpd
from .build import LikelihoodConfig, build_model, save_model


class LikelihoodTask:
    """Trains ``build_model(cfg)`` on ``dataset`` (``ds[idx]["images"]`` in [0, 1]) by the mean bound in bpd;
    with ``eval_dataset``, every checkpoint also scores the EMA model's bound on it (``eval_*`` in the history),
    averaged over ``eval_repeats`` passes of noise."""

    def __init__(
        self,
        cfg: LikelihoodConfig,
        dataset,
        num_samples: int = 64,
        sample_steps: int = 100,
        eval_dataset=None,
        eval_repeats: int = 1,
    ):
        if eval_repeats < 1:
            raise ValueError(f"eval_repeats: {eval_repeats} must be >= 1")
        self.cfg, self.dataset, self.eval_dataset, self.eval_repeats = cfg, dataset, eval_dataset, eval_repeats
        self.model = build_model(cfg)
        self.num_samples, self.sample_steps = num_samples, sample_steps
        self.image_shape = tuple(dataset[torch.arange(1)]["images"].shape[1:])
        if self.image_shape[0] != cfg.in_channels:
            raise ValueError(f"in_channels: {cfg.in_channels} but the data has {self.image_shape[0]} channels")

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, models: dict, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Mean over the batch of (reconstruction + prior + diffusion) / (D ln 2)."""
        x = images_to_x(batch["images"])
        terms = models["model"](x, generator)
        return nats_to_bpd(sum(terms.values()), x[0].numel()).mean()

    def evaluate(self, models: dict) -> dict:
        """The bound in bpd and its terms on ``eval_dataset``, the same noise at every checkpoint: pass r with seed r.

        With several passes, the terms are their mean and ``eval_total_mc_stderr`` the standard error of that mean
        over passes (one pass gives the per-example ``eval_total_stderr`` instead)."""
        if self.eval_dataset is None:
            return {}
        model = models["model"]
        device = next(model.parameters()).device
        x = images_to_x(self.eval_dataset[torch.arange(len(self.eval_dataset))]["images"]).to(device)
        passes = [evaluate_bpd(model, x, torch.Generator().manual_seed(r)) for r in range(self.eval_repeats)]
        result = passes[0] if len(passes) == 1 else mean_of_passes(passes)
        return {f"eval_{k}": v for k, v in result.items()}

    def sample(self, models: dict, generator: torch.Generator) -> torch.Tensor:
        model = models["model"]
        device = next(model.parameters()).device
        x = ancestral_sample(model, (self.num_samples, *self.image_shape), self.sample_steps, generator, device)
        return ((x + 1) / 2).cpu()

    def save(self, models: dict, directory: Path) -> None:
        save_model(models["model"], self.cfg, directory)
