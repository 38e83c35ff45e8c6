"""The workloads of `unetlab bench` and `unetlab tune`: the shipped models, a user's pipeline, or a random
SD-1.5- or SDXL-shaped UNet for speed only (full size or channels / 10, in float32, float16 or bfloat16, built on
the GPU where there is one)."""

from __future__ import annotations

import inspect

import torch

from ..eval.workload import Workload

# "diffusers' dummy types": diffusers' package imports its dummy objects (no attributes) first under TYPE_CHECKING,
# so mypy types its top-level names (`diffusers.StableDiffusionPipeline`, ...) as those.

DEFAULT_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "a red circle at the top left on a blue background",
    "a watercolor painting of a lighthouse",
    "a bowl of fruit on a wooden table",
]


def shipped_workload(name: str) -> Workload:
    """The shipped `digits` (unconditional DDIM), `shapes` (text-to-image, guidance 5) or `mini-sd` (a plain
    StableDiffusionPipeline, test-split captions, guidance 7.5, judged by the scene judge) model."""
    from ..loading import load

    pipe = load(name)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # diffusers' dummy types
    if name == "shapes":
        from ..data.shapes import heldout_captions

        return Workload(
            name, pipe, heldout_captions(500), "shapes", guidance_scale=5.0, call_kwargs={"output_type": "np"}
        )
    if name == "mini-sd":
        from ..data.scenes import sample

        return Workload(
            name,
            pipe,
            sample(500, seed=0, split="test")[1],
            "mini-sd",
            guidance_scale=7.5,
            call_kwargs={"output_type": "np"},
        )
    return Workload(name, pipe, None, "digits", call_kwargs={"output_type": "np"})


def user_workload(path: str, prompts: list[str] | None = None) -> Workload:
    """A user's diffusers pipeline (SD 1.x/2.x, SDXL, IF, ControlNet, DDPM) from a folder or hub id."""
    from ..loading import load

    pipe = load(path)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # diffusers' dummy types
    call = pipe.__call__  # type: ignore[operator]  # diffusers' dummy types
    takes_prompt = "prompt" in inspect.signature(call).parameters
    return Workload(
        str(path), pipe, (prompts or DEFAULT_PROMPTS) if takes_prompt else None, None, call_kwargs={"output_type": "np"}
    )


ARCHS = ("sd15", "sdxl")
DTYPES = ("float32", "float16", "bfloat16")
LATENT_SIZE = {"sd15": 64, "sdxl": 128}  # each architecture's own latent size at full scale
DOWNSAMPLE = {"sd15": 8, "sdxl": 4}  # a latent side must be a multiple of this (the UNet halves it per level)
GUIDANCE = {"sd15": 7.5, "sdxl": 5.0}  # the pipelines' default guidance scales
POOLED = 1280  # SDXL's pooled text embedding (text_encoder_2's projection)


def _ddim():
    """SD's and SDXL's DDIM scheduler."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def device() -> torch.device:
    """Where the speed-only pipelines are built: the GPU where there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def random_pipeline(
    arch: str = "sd15", scale: int = 10, sample_size: int | None = None, seed: int = 0, dtype: str = "float32"
):
    """A `StableDiffusionPipeline` (sd15) or `StableDiffusionXLPipeline` (sdxl) around a random UNet of that shape
    (channels / `scale`) in `dtype`, built on `device()`, with SD's DDIM scheduler; no text encoders (pass prompt
    embeddings) and no VAE (use `output_type="latent"`)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from ..unet.configs import sd15_like, sdxl_like

    _check_arch(arch, scale, sample_size, dtype)
    torch.manual_seed(seed)
    with torch.device(device()):
        make = sd15_like if arch == "sd15" else sdxl_like
        size = sample_size or LATENT_SIZE[arch]
        unet = make(scale=scale, sample_size=size).eval()  # type: ignore[attr-defined]  # diffusers' dummy types
    torch.nn.Module.to(unet, dtype=getattr(torch, dtype))  # diffusers' `to` warns about fp32 modules it has none of
    pipe: StableDiffusionPipeline | StableDiffusionXLPipeline
    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=None,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            unet=unet,
            scheduler=_ddim(),
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=None,
            text_encoder=None,
            tokenizer=None,
            unet=unet,
            scheduler=_ddim(),
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[union-attr]  # diffusers' dummy types
    return pipe


def sd15_random_pipeline(scale: int = 10, sample_size: int = 64, seed: int = 0):
    """`random_pipeline("sd15", ...)` in float32."""
    return random_pipeline("sd15", scale, sample_size, seed)


def _check_arch(arch: str, scale: int, sample_size: int | None, dtype: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    if scale not in (1, 10):
        raise ValueError(f"scale: expected 1 (full size) or 10 (channels / 10), got {scale!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    k = DOWNSAMPLE[arch]
    if sample_size is not None and (
        isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < k or sample_size % k
    ):
        raise ValueError(f"latent_size: expected a positive multiple of {k} for {arch}, got {sample_size!r}")


def arch_workload(
    arch: str = "sd15", seed: int = 0, sample_size: int | None = None, scale: int = 10, dtype: str = "float32"
) -> Workload:
    """Speed only: `random_pipeline`, guidance on, random prompt embeddings (and SDXL's pooled embedding) standing
    in for the text encoders, latents out (no VAE)."""
    pipe = random_pipeline(arch, scale, sample_size, seed, dtype)
    g = torch.Generator().manual_seed(seed)
    kwargs = {"embeds": torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=g)}
    if arch == "sdxl":
        kwargs["pooled_embeds"] = torch.randn(1, POOLED, generator=g)
    size = (sample_size or LATENT_SIZE[arch]) * 8
    return Workload(
        f"{arch}-random/{scale}",
        pipe,
        None,
        None,
        guidance_scale=GUIDANCE[arch],
        speed_only=True,
        call_kwargs={**kwargs, "height": size, "width": size, "output_type": "latent"},
    )


def sd15_workload(seed: int = 0, sample_size: int = 64, scale: int = 10) -> Workload:
    """`arch_workload("sd15", ...)` in float32."""
    return arch_workload("sd15", seed, sample_size, scale)


RECOMPILE_LIMIT = 64  # graphs per compiled function: the rows' patches and states each trace their own


def check_backend(backend: str) -> None:
    """Raise ValueError unless `backend` is a `torch.compile` backend of this torch."""
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"compile: unknown torch.compile backend {backend!r}; known: {', '.join(known)}")


def compile_unet(w: Workload, backend: str = "inductor") -> None:
    """Replace the workload's UNet by its `torch.compile(unet, backend=backend)` wrapper, which the accelerators
    patch through (`accel.handle.uncompiled`), with room for the graphs every row traces."""
    check_backend(backend)
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    w.pipe.unet = torch.compile(w.pipe.unet, backend=backend)


SHIPPED_WORKLOADS = ("mini-sd", "digits", "shapes")


def workload_for(
    model: str,
    arch: str | None = None,
    random_weights: bool = False,
    scale: int | None = None,
    dtype: str | None = None,
    latent_size: int | None = None,
) -> Workload:
    """The workload for a shipped model name, a user pipeline, or `--arch sd15|sdxl --random-weights` (at `scale`,
    default 10, in `dtype`, default float32, at `latent_size`, default the architecture's own)."""
    if arch is not None:
        if arch not in ARCHS or not random_weights:
            raise ValueError(
                "arch: only `--arch sd15|sdxl --random-weights` (speed only, SD-1.5 or SDXL shape) is available"
            )
        return arch_workload(arch, 0, latent_size, 10 if scale is None else scale, dtype or "float32")
    if random_weights:
        raise ValueError("random_weights: only valid together with arch='sd15' or 'sdxl'")
    for name, value in (("scale", scale), ("dtype", dtype), ("latent_size", latent_size)):
        if value is not None:
            raise ValueError(f"{name}: only valid together with arch='sd15' or 'sdxl' (--arch, --random-weights)")
    return shipped_workload(model) if model in SHIPPED_WORKLOADS else user_workload(model)
