"""The guidance batches diffusers pipelines give the UNet, and a chunk's rows of a UNet call.

| pipelines                                    | chunks of the batch           | cond | guides when          |
|----------------------------------------------|-------------------------------|------|----------------------|
| classifier-free guidance (SD, SDXL, img2img, | [uncond, cond]                | 1    | `do_classifier_free_ |
| inpaint, ControlNet, adapters, IF, shapes)   |                               |      | guidance`            |
| InstructPix2Pix (SD, SDXL)                   | [text + image, image, uncond] | 0    | the same             |
| PAG with classifier-free guidance            | [uncond, cond, perturbed]     | 1    | both flags           |
| PAG alone (`guidance_scale` <= 1)            | [cond, perturbed]             | 0    | `do_perturbed_       |
|                                              |                               |      | attention_guidance`  |

The layout comes from the pipeline's class (diffusers' `PAGMixin`, the InstructPix2Pix pipelines, else CFG); whether
a call guides comes from the pipeline's own flags, read at the UNet call. A pipeline without them (DeepFloyd IF,
SDXL InstructPix2Pix and unetlab's `ShapesPipeline` decide in a local variable) guides when the chunks of the first
UNet call's sample are copies of one sample in the channels the UNet predicts (guidance repeats the latents; the
check reads the device once per pipeline call). Every tensor argument whose first dimension is the batch
(the sample, text embeddings, SDXL's `added_cond_kwargs`, ControlNet and adapter residuals, masks, a batched
timestep) is split with it. PAG's processors split the batch themselves: a call on the conditional rows alone runs
its perturbed-attention layers with diffusers' `AttnProcessor2_0`, the processors' own unperturbed path.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """`chunks` equal parts of the batch, of which `cond` holds the conditional prediction."""

    name: str
    chunks: int
    cond: int


CFG = Layout("cfg", 2, 1)
PIX2PIX = Layout("instruct_pix2pix", 3, 0)
PAG_CFG = Layout("pag+cfg", 3, 1)
PAG = Layout("pag", 2, 0)


def family(pipe) -> str:
    """Which layouts the pipeline's class uses: "pag", "instruct_pix2pix" or "cfg"."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionXLInstructPix2PixPipeline
    from diffusers.pipelines.pag.pag_utils import PAGMixin

    if isinstance(pipe, PAGMixin):
        return "pag"
    if isinstance(pipe, (StableDiffusionInstructPix2PixPipeline, StableDiffusionXLInstructPix2PixPipeline)):
        return "instruct_pix2pix"
    return "cfg"


def recognise(pipe, kind: str) -> tuple[Layout, bool | None]:
    """(the layout of the guidance batch of a pipeline of `family` `kind`, whether its current call guides; None:
    the pipeline does not say)."""
    if kind == "pag":
        cfg, pag = bool(pipe.do_classifier_free_guidance), bool(pipe.do_perturbed_attention_guidance)
        return ((PAG_CFG if cfg else PAG) if pag else CFG), cfg or pag
    flag = getattr(type(pipe), "do_classifier_free_guidance", None)
    return (PIX2PIX if kind == "instruct_pix2pix" else CFG), (
        bool(pipe.do_classifier_free_guidance) if isinstance(flag, property) else None
    )


def copies(sample: torch.Tensor, layout: Layout, channels: int) -> bool:
    """Whether the sample's chunks agree in their first `channels` channels (the guidance copies of one sample)."""
    parts = sample[:, :channels].chunk(layout.chunks)
    return all(torch.equal(parts[0], p) for p in parts[1:])


def rows(value, batch: int, layout: Layout, index: int):
    """`value` (a call argument; dicts, lists and tuples are entered) with every tensor whose first dimension is
    `batch` cut to the rows of chunk `index`."""
    if torch.is_tensor(value):
        if value.ndim == 0 or value.shape[0] != batch:
            return value
        size = batch // layout.chunks
        return value[index * size : (index + 1) * size]
    if isinstance(value, dict):
        return {k: rows(v, batch, layout, index) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rows(v, batch, layout, index) for v in value)
    return value


def perturbed_layers(pipe, unet) -> list[torch.nn.Module]:
    """The attention modules running one of the PAG pipeline's perturbed-attention processors now."""
    processors = getattr(pipe, "_pag_attn_processors", None) or ()
    return [m for m in unet.modules() if any(getattr(m, "processor", None) is p for p in processors)]


@contextlib.contextmanager
def unperturbed(modules):
    """While entered, `modules` run diffusers' `AttnProcessor2_0` (PAG's unperturbed path) instead of their PAG
    processors."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    saved = [m.processor for m in modules]
    plain = AttnProcessor2_0()
    for m in modules:
        m.processor = plain
    try:
        yield
    finally:
        for m, p in zip(modules, saved):
            m.processor = p
