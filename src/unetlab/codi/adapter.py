"""The CoDi adapter (Mei et al. 2024, Sec. 3.3, Fig. 3): a trainable copy of the teacher's encoder that feeds
zero-initialised residuals into the teacher's skips and bottleneck, ControlNet-style (Zhang et al. 2023, Eq. 2-3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel, UNet3DConditionModel, UNetMotionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from ..unet import check_supported, decode, encode

UNET_CLASSES = {c.__name__: c for c in (UNet2DModel, UNet2DConditionModel, UNet3DConditionModel, UNetMotionModel)}
ENCODER_PREFIXES = (
    "conv_in.",
    "transformer_in.",
    "time_proj.",
    "time_embedding.",
    "class_embedding.",
    "add_embedding.",
    "encoder_hid_proj.",
    "down_blocks.",
    "mid_block.",
)


def skip_channels(unet_config: dict) -> list[int]:
    """Channels of the skip tensors the split encoder returns: the stem, each resnet, each downsampler."""
    channels = list(unet_config["block_out_channels"])
    layers = unet_config["layers_per_block"]
    layers = [layers] * len(channels) if isinstance(layers, int) else list(layers)
    out = [channels[0]]
    for i, c in enumerate(channels):
        out += [c] * layers[i]
        if i < len(channels) - 1:
            out.append(c)
    return out


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class CoDiAdapter(ModelMixin, ConfigMixin):
    """Encoder copy (stem, time embedding, down blocks, mid block) + condition embedding + zero 1x1 convs.

    `adapter(z, t, condition, **cond)` returns `(down_residuals, mid_residual)` for `encode`'s residual inputs;
    the condition (N, condition_channels, condition_size, condition_size) in [0, 1] is resized to the sample's
    size, embedded by a small CNN whose last conv starts at zero, and added to the copied stem's output (for a
    video UNet's sample (N, C, F, H, W), one condition per video, added to every frame).
    """

    @register_to_config
    def __init__(
        self,
        unet_class: str = "UNet2DModel",
        unet_config: dict | None = None,
        condition_channels: int = 1,
        condition_size: int = 16,
        embedding_channels: tuple = (16, 32),
    ):
        super().__init__()
        if unet_class not in UNET_CLASSES:
            raise ValueError(f"unet_class: {unet_class!r} is not one of {', '.join(UNET_CLASSES)}")
        if unet_config is None:
            raise ValueError("unet_config: required (the teacher UNet's config dict)")
        encoder = UNET_CLASSES[unet_class].from_config(unet_config)
        encoder.up_blocks = nn.ModuleList()
        for name in ("conv_norm_out", "conv_act", "conv_out"):
            setattr(encoder, name, None)
        self.encoder = encoder
        widths = [condition_channels, *embedding_channels]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(widths[-1], encoder.conv_in.out_channels, 3, padding=1))
        self.condition_embedding = nn.Sequential(*layers)
        self.zero_convs = nn.ModuleList(_zero_conv(c) for c in skip_channels(unet_config))
        self.mid_zero_conv = _zero_conv(unet_config["block_out_channels"][-1])

    @classmethod
    def from_unet(
        cls,
        unet,
        condition_channels: int,
        condition_size: int,
        generator: torch.Generator,
        embedding_channels: tuple = (16, 32),
    ) -> CoDiAdapter:
        """An adapter for `unet` whose encoder copies the teacher's weights; the condition CNN's inner convs are
        drawn from `generator` (PyTorch's default conv init), its last conv and all 1x1 convs are zero."""
        check_supported(unet)
        adapter = cls(
            type(unet).__name__, dict(unet.config), condition_channels, condition_size, tuple(embedding_channels)
        )
        teacher = {k: v for k, v in unet.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
        adapter.encoder.load_state_dict(teacher, strict=True)
        with torch.no_grad():
            convs = [m for m in adapter.condition_embedding if isinstance(m, nn.Conv2d)]
            for conv in convs[:-1]:
                bound = 1 / math.sqrt(conv.weight[0].numel())
                conv.weight.copy_(torch.rand(conv.weight.shape, generator=generator) * 2 * bound - bound)
                conv.bias.copy_(torch.rand(conv.bias.shape, generator=generator) * 2 * bound - bound)
            nn.init.zeros_(convs[-1].weight)
            nn.init.zeros_(convs[-1].bias)
        adapter.to(unet.device)
        return adapter if unet.dtype == torch.float32 else adapter.to(dtype=unet.dtype)

    def forward(self, sample: torch.Tensor, timestep, condition: torch.Tensor, **cond):
        size = sample.shape[-2:]
        if condition.shape[-2:] != size:
            mode = "nearest" if condition.shape[-1] < size[-1] else "area"
            condition = F.interpolate(condition, size=size, mode=mode)
        c = self.condition_embedding(condition.to(sample.dtype))
        if sample.ndim == 5:  # video: the stem runs on the N * F frames, video by video
            c = c.repeat_interleave(sample.shape[2], dim=0)
        hook = self.encoder.conv_in.register_forward_hook(lambda module, args, output: output + c)
        try:
            state = encode(self.encoder, sample, timestep, **cond)
        finally:
            hook.remove()
        down = [conv(s) for conv, s in zip(self.zero_convs, state.skips)]
        return down, self.mid_zero_conv(state.mid)


def adapted_unet(
    unet, adapter: CoDiAdapter, sample: torch.Tensor, timestep, condition: torch.Tensor, **cond
) -> torch.Tensor:
    """The teacher's output with the adapter's residuals on its skips and bottleneck (the CoDi student)."""
    down, mid = adapter(sample, timestep, condition, **cond)
    state = encode(
        unet, sample, timestep, down_block_additional_residuals=down, mid_block_additional_residual=mid, **cond
    )
    return decode(unet, state, [timestep])


class AdaptedUNet(nn.Module):
    """The CoDi student as one module (adapter, then UNet): `forward` is `adapted_unet`, so a wrapper such as
    DistributedDataParallel that runs `forward` sees every trained parameter, the UNet's included."""

    def __init__(self, adapter: CoDiAdapter, unet):
        super().__init__()
        self.adapter, self.unet = adapter, unet

    def forward(self, sample: torch.Tensor, timestep, condition: torch.Tensor, **cond) -> torch.Tensor:
        return adapted_unet(self.unet, self.adapter, sample, timestep, condition, **cond)
