"""Build, save and load VDM / DiffEnc models from one validated config (diffusers `save_pretrained` layout)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import write, write_json
from ..diffenc import DiffEnc, NonTrainableEncoder, TrainableEncoder
from ..vdm.model import VDM
from ..vdm.schedules import GAMMA_MAX, GAMMA_MIN, FixedLinearSchedule, LearnedLinearSchedule, MonotoneSchedule
from ..vdm.score_net import NoDownsampleUNet

METHODS = ("vdm", "diffenc")
ENCODERS = ("trainable", "nt")
SCHEDULES = {"fixed": FixedLinearSchedule, "learned": LearnedLinearSchedule, "monotone": MonotoneSchedule}
CONFIG_NAME = "likelihood.json"


@dataclass
class LikelihoodConfig:
    """A VDM (``parameterization`` eps or v) or DiffEnc (always v; ``encoder`` trainable or nt) model on images."""

    method: str = "vdm"
    parameterization: str = "v"
    encoder: str = "trainable"
    schedule: str = "fixed"
    gamma_min: float = GAMMA_MIN
    gamma_max: float = GAMMA_MAX
    in_channels: int = 1
    channels: int = 64
    blocks: int = 4
    attention: bool = True
    encoder_channels: int = 32
    encoder_blocks: int = 2
    fourier_exponents: tuple[int, ...] = (6, 7)
    init_seed: int = 0

    def __post_init__(self):
        choices = {
            "method": METHODS,
            "encoder": ENCODERS,
            "schedule": tuple(SCHEDULES),
            "parameterization": ("eps", "v"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(valid)}")
        if self.method == "diffenc" and self.parameterization != "v":
            raise ValueError(f"parameterization: DiffEnc is v-parameterised, got {self.parameterization!r}")
        for name in ("in_channels", "channels", "blocks", "encoder_channels", "encoder_blocks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be a positive int")
        used = (
            ("channels", "encoder_channels")
            if self.method == "diffenc" and self.encoder == "trainable"
            else ("channels",)
        )
        for name in used:
            if getattr(self, name) % 2:
                raise ValueError(
                    f"{name}: {getattr(self, name)} must be even (the time embedding has that many sin/cos features)"
                )
        ns = self.fourier_exponents = tuple(self.fourier_exponents)
        if len(set(ns)) != len(ns) or not all(isinstance(n, int) and 0 <= n <= 16 for n in ns):
            raise ValueError(
                f"fourier_exponents: {self.fourier_exponents!r} must be distinct ints in 0..16 (features at 2ⁿ·2π·z)"
            )

    @property
    def label(self) -> str:
        """VDMε, VDMv, DiffEnc-nt or DiffEnc."""
        if self.method == "vdm":
            return "VDMv" if self.parameterization == "v" else "VDMε"
        return "DiffEnc" if self.encoder == "trainable" else "DiffEnc-nt"


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def build_model(cfg: LikelihoodConfig) -> VDM:
    """A freshly initialised model; parameters are drawn from a private RNG seeded with ``cfg.init_seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        schedule_cls = SCHEDULES[cfg.schedule]
        if schedule_cls is MonotoneSchedule:
            schedule = MonotoneSchedule(
                cfg.gamma_min, cfg.gamma_max, generator=torch.Generator().manual_seed(cfg.init_seed)
            )
        else:
            schedule = schedule_cls(cfg.gamma_min, cfg.gamma_max)
        score_net = NoDownsampleUNet(
            in_channels=cfg.in_channels,
            channels=cfg.channels,
            n_blocks=cfg.blocks,
            attention=cfg.attention,
            fourier_exponents=cfg.fourier_exponents,
            norm_groups=_groups(cfg.channels),
            gamma_min=cfg.gamma_min,
            gamma_max=cfg.gamma_max,
        )
        if cfg.method == "vdm":
            return VDM(score_net, schedule, cfg.parameterization)
        if cfg.encoder == "nt":
            return DiffEnc(score_net, schedule, NonTrainableEncoder())
        y_net = NoDownsampleUNet(
            in_channels=cfg.in_channels,
            channels=cfg.encoder_channels,
            n_blocks=cfg.encoder_blocks,
            fourier_exponents=(),
            attention=False,
            add_input=False,
            output_tanh=True,
            norm_groups=_groups(cfg.encoder_channels),
            gamma_min=cfg.gamma_min,
            gamma_max=cfg.gamma_max,
        )
        return DiffEnc(score_net, schedule, TrainableEncoder(y_net))


def save_model(model: VDM, cfg: LikelihoodConfig, directory: str | Path) -> None:
    """Write ``likelihood.json`` and ``model.safetensors`` (all parameters and buffers) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write(directory / "model.safetensors", lambda tmp: save_file(state, tmp))
    write_json(directory / CONFIG_NAME, asdict(cfg))


def load_model(directory: str | Path) -> tuple[VDM, LikelihoodConfig]:
    """The model and config saved by `save_model` in ``directory``."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"model directory: {directory} has no {CONFIG_NAME} (expected a saved VDM/DiffEnc)")
    raw = json.loads((directory / CONFIG_NAME).read_text())
    cfg = LikelihoodConfig(**{f.name: raw[f.name] for f in fields(LikelihoodConfig) if f.name in raw})
    model = build_model(cfg)
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model, cfg
