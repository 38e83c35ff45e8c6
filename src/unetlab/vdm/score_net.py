"""The VDM score network: a UNet without down-sampling, Fourier input features and a `+ z` output (Kingma et al.
2021; VDM code `ScoreUNet`)."""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .schedules import GAMMA_MAX, GAMMA_MIN


def fourier_features(z: torch.Tensor, exponents: tuple[int, ...]) -> torch.Tensor:
    """VDM Fourier features (code `get_fourier_features`): sin and cos of 2ⁿ·2π·z for each n in ``exponents``,
    channel-stacked."""
    freqs = torch.tensor([2.0**n * 2.0 * math.pi for n in exponents], dtype=z.dtype, device=z.device)
    h = (z.unsqueeze(2) * freqs.view(1, 1, -1, 1, 1)).flatten(1, 2)
    return torch.cat([torch.sin(h), torch.cos(h)], dim=1)


def embedding_frequencies(dim: int, like: torch.Tensor) -> torch.Tensor:
    """The ``dim // 2`` frequencies of `sinusoidal_embedding`: 10000^(−k/(dim/2 − 1)), k = 0 … dim/2 − 1."""
    half = dim // 2
    return torch.exp(-math.log(10000.0) * torch.arange(half, dtype=like.dtype, device=like.device) / (half - 1))


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of 1000·t in the input's dtype (VDM code `get_timestep_embedding`)."""
    angles = 1000.0 * t.reshape(-1, 1) * embedding_frequencies(dim, t)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class NoDownsampleUNet(ModelMixin, ConfigMixin):
    """VDM `ScoreUNet`: n resnet blocks down, resnet-attention-resnet middle, n+1 blocks up, all at full resolution.

    Conditioned on γ normalised to t = (γ − γ_min)/(γ_max − γ_min). ``add_input=True`` returns ``z + h``
    (VDM's base measure); ``output_tanh=True`` returns ``tanh(h)`` (DiffEnc's encoder y_φ). The last conv is
    zero-initialised, so at initialisation the output is ``z`` (or 0).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 64,
        n_blocks: int = 4,
        fourier_exponents: tuple[int, ...] = (6, 7),
        attention: bool = True,
        add_input: bool = True,
        output_tanh: bool = False,
        norm_groups: int = 8,
        dropout: float = 0.0,
        gamma_min: float = GAMMA_MIN,
        gamma_max: float = GAMMA_MAX,
    ):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        if channels % norm_groups or channels < 2:
            raise ValueError(f"channels must be a multiple of norm_groups={norm_groups}, got channels={channels}")
        if add_input and output_tanh:
            raise ValueError(
                "add_input and output_tanh are exclusive: pick the score net (add_input) or encoder (tanh)"
            )
        temb = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        conv_in_channels = in_channels * (1 + 2 * len(fourier_exponents))
        self.conv_in = nn.Conv2d(conv_in_channels, channels, 3, padding=1)

        def block(c_in: int) -> ResnetBlock2D:
            return ResnetBlock2D(
                in_channels=c_in,
                out_channels=channels,
                temb_channels=temb,
                groups=norm_groups,
                dropout=dropout,
                skip_time_act=True,
            )

        def attn() -> nn.Module:
            return Attention(
                channels,
                heads=1,
                dim_head=channels,
                norm_num_groups=norm_groups,
                residual_connection=True,
                bias=True,
            )

        self.down = nn.ModuleList([block(channels) for _ in range(n_blocks)])
        self.mid = nn.ModuleList([block(channels), attn() if attention else nn.Identity(), block(channels)])
        self.up = nn.ModuleList([block(2 * channels) for _ in range(n_blocks + 1)])
        self.norm_out = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.conv_out = nn.Conv2d(channels, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def input_features(self, z: torch.Tensor) -> torch.Tensor:
        """z stacked with its Fourier features: what ``conv_in`` sees."""
        exponents = tuple(self.config.fourier_exponents)
        return torch.cat([z, fourier_features(z, exponents)], 1) if exponents else z

    def trunk(self, h, cond, resnet=None, concat=None):
        """Down blocks, middle, up blocks with their skips, from ``conv_in``'s output to ``norm_out``'s input.

        ``resnet(block, h, cond)`` and ``concat(h, skip)`` default to the plain calls; `diffenc.tangent` passes
        (value, tangent) versions, with which the middle attention must be ``nn.Identity``.
        """
        resnet = resnet or (lambda block, h, cond: block(h, cond))
        concat = concat or (lambda h, skip: torch.cat([h, skip], 1))
        skips = [h]
        for block in self.down:
            h = resnet(block, h, cond)
            skips.append(h)
        h = resnet(self.mid[2], self.mid[1](resnet(self.mid[0], h, cond)), cond)
        for block in self.up:
            h = resnet(block, concat(h, skips.pop()), cond)
        return h

    def normalised_time(self, gamma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """t = (γ − γ_min)/(γ_max − γ_min) per example of ``z``, in its dtype."""
        cfg = self.config
        gamma = gamma.to(z.dtype).reshape(-1).expand(z.shape[0])
        return (gamma - cfg.gamma_min) / (cfg.gamma_max - cfg.gamma_min)

    def forward(self, z: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        t = self.normalised_time(gamma, z)
        cond = nn.functional.silu(self.time_mlp(sinusoidal_embedding(t, cfg.channels)))
        h = self.trunk(self.conv_in(self.input_features(z)), cond)
        h = self.conv_out(nn.functional.silu(self.norm_out(h)))
        if cfg.add_input:
            return z + h
        return torch.tanh(h) if cfg.output_tanh else h
