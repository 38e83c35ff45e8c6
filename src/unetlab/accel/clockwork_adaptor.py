"""Clockwork's learned adaptor (Habibian et al., CVPR 2024, Sec. 3.2): phi(r_in^t, r_out^{t+1}, t, text).

A small network in place of the low-resolution path below the cut `level` (`unet.partial.deep_modules`):
from the high-resolution feature r_in^t entering the cut at this step (the input of `down_blocks[level-1]`'s
downsampler), a strided convolution halves the resolution, a linear projection of the pooled text embedding
is added where the UNet is text-conditional, two ResNet blocks (diffusers' `ResnetBlock2D`) are conditioned
on the UNet's own time embedding of this step, a transposed convolution returns to the resolution of the
path's output, and the result is added to the previous step's low-resolution output r_out^{t+1} (the output
of `up_blocks[n-level-1]`). The transposed convolution starts at zero, so an untrained adaptor is exactly
the identity adaptor: phi = r_out^{t+1}.

`load_adaptor` accepts a loaded `ClockworkAdaptor`, a `save_pretrained` folder (config.json + safetensors), an
`unetlab train clockwork` run folder (its latest checkpoint) or the name of a shipped adaptor: "digits" and
"shapes", distilled for the shipped models of those names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from ..checkpoint import latest
from ..models.registry import CLOCKWORK_ADAPTORS, weights_path
from ..seeding import seeded
from ..unet.partial import check_levels, num_levels


def shipped_path(name: str) -> Path:
    """The package folder of the adaptor shipped for model `name` ("digits" or "shapes")."""
    return weights_path(f"clockwork-adaptor-{name}")


def pooled_text(encoder_hidden_states: torch.Tensor | None) -> torch.Tensor | None:
    """The pooled text embedding: the mean of the UNet's `encoder_hidden_states` over the sequence."""
    return None if encoder_hidden_states is None else encoder_hidden_states.mean(dim=1)


def _groups(channels: int, groups: int) -> int:
    """The largest group count <= `groups` that divides `channels` (GroupNorm needs one)."""
    return max(g for g in range(1, groups + 1) if channels % g == 0)


def unet_dims(unet, level: int) -> dict:
    """What an adaptor at `level` of `unet` must accept and return; a one-line error where it cannot be plugged."""
    check_levels(unet, level, "level")
    n = num_levels(unet)
    cfg = unet.config
    down = unet.down_blocks[level - 1]
    if not getattr(down, "downsamplers", None):
        raise ValueError(
            f"adaptor: down_blocks.{level - 1} has no downsampler, so the cut at level {level} has no "
            "high-resolution input to read"
        )
    last = unet.up_blocks[n - level - 1]
    if hasattr(last, "skip_conv") or hasattr(last, "skip_norm"):
        raise ValueError(
            f"adaptor: {type(last).__name__} returns a skip image besides its feature; the learned "
            "adaptor needs up blocks that return one tensor (use the identity adaptor, adaptor=None)"
        )
    proj = getattr(unet.down_blocks[level].resnets[0], "time_emb_proj", None)
    if not isinstance(proj, nn.Linear):
        raise ValueError(f"adaptor: down_blocks.{level}'s resnets take no time embedding; the adaptor conditions on it")
    text_dim = None
    if isinstance(unet, UNet2DConditionModel):
        text_dim = cfg.encoder_hid_dim or cfg.cross_attention_dim
    return {
        "in_channels": cfg.block_out_channels[level - 1],
        "out_channels": cfg.block_out_channels[level],
        "temb_channels": proj.in_features,
        "text_dim": text_dim,
        "level": level,
    }


# diffusers' two bases type `config_name` differently (str and None), as for every diffusers model
class ClockworkAdaptor(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """phi(r_in, r_prev, temb, text) = r_prev + ConvT(Res(Res(Conv_s2(r_in) + W text, temb), temb)) (Sec. 3.2)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 64,
        temb_channels: int = 128,
        text_dim: int | None = None,
        channels: int = 64,
        groups: int = 8,
        level: int = 1,
    ):
        super().__init__()
        groups = _groups(channels, groups)
        self.conv_down = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)
        self.text_proj = nn.Linear(text_dim, channels) if text_dim else None
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels=channels, out_channels=channels, temb_channels=temb_channels, groups=groups)
            for _ in range(2)
        )
        self.conv_up = nn.ConvTranspose2d(channels, out_channels, 3, stride=2, padding=1)
        for p in self.conv_up.parameters():  # weight and bias: phi starts as the identity r_prev
            nn.init.zeros_(p)
        self.source: str | None = None  # the shipped name or folder it was loaded from

    @classmethod
    def from_unet(cls, unet, level: int = 1, channels: int | None = None, seed: int = 0) -> ClockworkAdaptor:
        """An identity-initialised adaptor for `unet` at `level`; `channels` defaults to the width of r_in (the level
        it reads from: about 5% of a full step's FLOPs on the shipped models, 1% on SD 1.5); the other weights are
        drawn from torch's default initialisation seeded by `seed`."""
        dims = unet_dims(unet, level)
        width = dims["in_channels"] if channels is None else channels
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"channels: expected None or an int >= 1, got {channels!r}")
        with seeded(seed):
            adaptor = cls(**dims, channels=width, groups=unet.config.norm_num_groups or 32)
        adaptor.to(unet.device)
        return adaptor if unet.dtype == torch.float32 else adaptor.to(dtype=unet.dtype)

    def check(self, unet, level: int) -> None:
        """Raise a one-line error unless this adaptor fits `unet` at `level`."""
        need = unet_dims(unet, level)
        have = {k: self.config[k] for k in need}
        if have != need:
            diff = ", ".join(f"{k} {have[k]} (this UNet: {need[k]})" for k in need if have[k] != need[k])
            raise ValueError(f"adaptor: made for another UNet or cut level: {diff}")

    def forward(
        self, r_in: torch.Tensor, r_prev: torch.Tensor, temb: torch.Tensor, text: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.conv_down(r_in)
        if self.text_proj is not None:
            if text is None:
                raise ValueError("text: this adaptor is text-conditional; pass the pooled text embedding")
            h = h + self.text_proj(text.to(h.dtype))[:, :, None, None]
        for resnet in self.resnets:
            h = resnet(h, temb)
        return r_prev + self.conv_up(h, output_size=r_prev.shape[-2:])


def _folder(name: str) -> Path:
    """The folder of a shipped name, a `save_pretrained` folder, or the latest checkpoint's of a training run."""
    if name in CLOCKWORK_ADAPTORS:
        return shipped_path(name)
    path = Path(name)
    if not (path / "config.json").is_file() and path.is_dir() and (last := latest(path)) is not None:
        return last / "pipeline"
    return path


def load_adaptor(adaptor) -> ClockworkAdaptor:
    """The adaptor named by `adaptor`: a `ClockworkAdaptor`, a shipped name, a `save_pretrained` folder or an
    `unetlab train clockwork` run folder (its latest checkpoint)."""
    if isinstance(adaptor, ClockworkAdaptor):
        return adaptor
    name = os.fspath(adaptor)
    path = _folder(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"adaptor: {path} holds no config.json (not a ClockworkAdaptor save_pretrained folder)")
    module = ClockworkAdaptor.from_pretrained(path).eval().requires_grad_(False)
    module.source = name
    return module


def check_spec(adaptor) -> None:
    """Raise a one-line error unless `adaptor` names an adaptor: None, a `ClockworkAdaptor`, a shipped name or
    an existing folder."""
    if adaptor is None or isinstance(adaptor, ClockworkAdaptor):
        return
    if not isinstance(adaptor, (str, os.PathLike)):
        raise TypeError(
            f"adaptor: expected None (the identity adaptor), a ClockworkAdaptor, a shipped name "
            f"({', '.join(CLOCKWORK_ADAPTORS)}) or a save_pretrained folder, got {type(adaptor).__name__}"
        )
    name = os.fspath(adaptor)
    if name not in CLOCKWORK_ADAPTORS and not Path(name).is_dir():
        raise ValueError(
            f"adaptor: {name!r} is neither a shipped adaptor ({', '.join(CLOCKWORK_ADAPTORS)}) nor a folder"
        )


def adaptor_level(adaptor) -> int | None:
    """The cut level an adaptor was made for (None when `adaptor` is None or its folder has no readable config)."""
    if adaptor is None:
        return None
    if isinstance(adaptor, ClockworkAdaptor):
        return adaptor.config.level
    try:
        path = _folder(os.fspath(adaptor))
        return int(ClockworkAdaptor.load_config(path)["level"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shipped_adaptor_for(unet) -> str:
    """The name of the shipped adaptor distilled for `unet`, when `unet` was loaded from a shipped model's weights."""
    source = getattr(unet.config, "_name_or_path", None)
    for name in CLOCKWORK_ADAPTORS:
        if source and Path(source).resolve() == (weights_path(name) / "unet").resolve():
            return name
    raise ValueError(
        f"adaptor: no shipped adaptor was distilled for this UNet (shipped: "
        f"{', '.join(CLOCKWORK_ADAPTORS)}, for the shipped models of those names); distil one with "
        "`unetlab train clockwork --model PATH`"
    )
