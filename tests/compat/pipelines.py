"""Tiny diffusers pipelines, built in-process the way diffusers' own tests build them (random weights, prompt
embeddings instead of tokenizers and text encoders, nothing from a hub). `build(name)` returns the pipeline and
the keyword arguments of a deterministic call (`run(pipe, kwargs)`)."""

from __future__ import annotations

import inspect

import diffusers as d
import torch

from unetlab.testing import tiny_controlnet, tiny_unet

SD_SCHEDULER = dict(
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
)
STEPS = 6


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _embeds(*shape, seed):
    return torch.randn(*shape, generator=_g(seed))


def _vae(channels=4):
    """A tiny VAE with scale factor 8."""
    torch.manual_seed(0)
    return d.AutoencoderKL(
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=2,
        latent_channels=channels,
    )


def _make(cls, **components):
    """`cls(**components)` with every optional component the constructor names set to None (no safety checker)."""
    params = inspect.signature(cls.__init__).parameters
    for name in (
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
        "safety_checker",
        "feature_extractor",
        "image_encoder",
        "watermarker",
    ):
        if name in params and name not in components:
            components[name] = None
    if "requires_safety_checker" in params:
        components["requires_safety_checker"] = False
    if "add_watermarker" in params:
        components["add_watermarker"] = False
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sd_text(**more):
    return (
        dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            num_inference_steps=STEPS,
            output_type="latent",
        )
        | more
    )


def _sdxl_text(**more):
    return (
        dict(
            prompt_embeds=_embeds(1, 5, 16, seed=1),
            negative_prompt_embeds=_embeds(1, 5, 16, seed=2),
            pooled_prompt_embeds=_embeds(1, 8, seed=3),
            negative_pooled_prompt_embeds=_embeds(1, 8, seed=4),
            num_inference_steps=STEPS,
            output_type="latent",
        )
        | more
    )


def _image(size=64, seed=5):
    return torch.rand(1, 3, size, size, generator=_g(seed))


def _ddim():
    return d.DDIMScheduler(**SD_SCHEDULER)


def build(name: str):
    """(pipeline, call kwargs) for one of `NAMES`."""
    return BUILDERS[name]()


def _sd_t2i():
    return _make(d.StableDiffusionPipeline, vae=_vae(), unet=tiny_unet("sd"), scheduler=_ddim()), _sd_text(
        height=64, width=64
    )


def _sd_half(dtype):
    pipe, kw = _sd_t2i()
    pipe.to(dtype)
    kw.update(
        prompt_embeds=kw["prompt_embeds"].to(dtype), negative_prompt_embeds=kw["negative_prompt_embeds"].to(dtype)
    )
    return pipe, kw


def _sd_compiled(**compile_kwargs):
    """SD with `pipe.unet = torch.compile(pipe.unet)`: backend "eager" (dynamo traces and guards as with any backend,
    its graphs run as plain PyTorch, so outputs stay bit-identical); a two-level UNet keeps tracing cheap."""
    unet = tiny_unet(
        "sd",
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    pipe = _make(d.StableDiffusionPipeline, vae=_vae(), unet=unet, scheduler=_ddim())
    pipe.unet = torch.compile(unet, **({"backend": "eager"} | compile_kwargs))
    return pipe, _sd_text(height=64, width=64)


def _sd_img2img():
    return (
        _make(d.StableDiffusionImg2ImgPipeline, vae=_vae(), unet=tiny_unet("sd"), scheduler=_ddim()),
        _sd_text(image=_image(), strength=0.7),
    )


def _sd_inpaint():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    return (
        _make(d.StableDiffusionInpaintPipeline, vae=_vae(), unet=tiny_unet("sd"), scheduler=_ddim()),
        _sd_text(image=_image(), mask_image=mask, strength=0.8, height=64, width=64),
    )


def _sd_img2img_dpm():
    """img2img with a multistep solver that keeps its own step index (`set_begin_index`)."""
    pipe, kw = _sd_img2img()
    pipe.scheduler = d.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe, kw


def _sdxl_inpaint():
    """SDXL inpainting at its default strength (0.9999: every step but from a noised image)."""
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 8:40, 24:56] = 1
    pipe = _make(
        d.StableDiffusionXLInpaintPipeline,
        vae=_vae(),
        unet=tiny_unet("sdxl"),
        scheduler=_ddim(),
        requires_aesthetics_score=False,
    )
    return pipe, _sdxl_text(image=_image(), mask_image=mask, height=64, width=64)


def _sdxl_t2i():
    return (
        _make(d.StableDiffusionXLPipeline, vae=_vae(), unet=tiny_unet("sdxl"), scheduler=_ddim()),
        _sdxl_text(height=64, width=64),
    )


def _sdxl_base_end():
    """The SDXL base half of the base + refiner recipe: stops at `denoising_end`."""
    pipe, kw = _sdxl_t2i()
    kw.update(denoising_end=0.6, num_inference_steps=8)
    return pipe, kw


def _sdxl_refiner():
    """The refiner half: `StableDiffusionXLImg2ImgPipeline` from `denoising_start` on the base's latents."""
    pipe = _make(
        d.StableDiffusionXLImg2ImgPipeline,
        vae=_vae(),
        unet=tiny_unet("sdxl"),
        scheduler=_ddim(),
        requires_aesthetics_score=False,
    )
    kw = _sdxl_text(image=torch.randn(1, 4, 8, 8, generator=_g(7)), denoising_start=0.6, num_inference_steps=8)
    return pipe, kw


def _controlnet(multi=False):
    unet = tiny_unet("sd")
    net = [tiny_controlnet(unet, seed=1), tiny_controlnet(unet, seed=2)] if multi else tiny_controlnet(unet)
    pipe = _make(d.StableDiffusionControlNetPipeline, vae=_vae(), unet=unet, controlnet=net, scheduler=_ddim())
    image = [_image(seed=5), _image(seed=6)] if multi else _image()
    return pipe, _sd_text(image=image, height=64, width=64)


def _controlnet_img2img():
    unet = tiny_unet("sd")
    pipe = _make(
        d.StableDiffusionControlNetImg2ImgPipeline,
        vae=_vae(),
        unet=unet,
        controlnet=tiny_controlnet(unet),
        scheduler=_ddim(),
    )
    return pipe, _sd_text(image=_image(seed=5), control_image=_image(seed=6), strength=0.7, height=64, width=64)


def _controlnet_sdxl():
    unet = tiny_unet("sdxl")
    pipe = _make(
        d.StableDiffusionXLControlNetPipeline,
        vae=_vae(),
        unet=unet,
        controlnet=tiny_controlnet(unet),
        scheduler=_ddim(),
    )
    return pipe, _sdxl_text(image=_image(), height=64, width=64)


def _t2i_adapter():
    torch.manual_seed(3)
    adapter = d.T2IAdapter(
        in_channels=3, channels=[8, 16, 16], num_res_blocks=1, downscale_factor=8, adapter_type="full_adapter"
    )
    pipe = _make(d.StableDiffusionAdapterPipeline, vae=_vae(), unet=tiny_unet("sd"), adapter=adapter, scheduler=_ddim())
    return pipe, _sd_text(image=_image(), height=64, width=64)


def add_ip_adapter(unet) -> None:
    """One IP-Adapter built in-process, as `load_ip_adapter` installs it: an image projection (image embeddings of
    size 8) and IP attention processors on the text cross-attention layers (attn2 outside the motion modules)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    torch.manual_seed(4)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(
        [ImageProjection(image_embed_dim=8, cross_attention_dim=16, num_image_text_embeds=4)]
    )
    unet.config.encoder_hid_dim_type = "ip_image_proj"
    procs = {}
    for name, processor in unet.attn_processors.items():
        attn = unet.get_submodule(name.removesuffix(".processor"))
        text = name.endswith("attn2.processor") and "motion_modules" not in name
        procs[name] = (
            IPAdapterAttnProcessor2_0(attn.to_q.out_features, 16, num_tokens=(4,), scale=0.7)
            if text
            else processor
            if "motion_modules" in name
            else AttnProcessor2_0()
        )
    unet.set_attn_processor(procs)
    for p in unet.attn_processors.values():
        for layer in getattr(p, "to_k_ip", []) + getattr(p, "to_v_ip", []):
            torch.nn.init.normal_(layer.weight, std=0.2)


def _ip_adapter():
    """SD with one IP-Adapter built in-process (`add_ip_adapter`)."""
    pipe, kw = _sd_t2i()
    add_ip_adapter(pipe.unet)
    kw["ip_adapter_image_embeds"] = [torch.randn(2, 1, 8, generator=_g(9))]  # [negative, positive]
    return pipe, kw


def _upscale_x4():
    unet = tiny_unet("sd", in_channels=7, num_class_embeds=1000)
    torch.manual_seed(0)
    vae = d.AutoencoderKL(
        block_out_channels=(4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=2,
        latent_channels=4,
        scaling_factor=0.08333,
    )
    pipe = _make(
        d.StableDiffusionUpscalePipeline,
        vae=vae,
        unet=unet,
        low_res_scheduler=d.DDPMScheduler(),
        scheduler=_ddim(),
        max_noise_level=350,
    )
    return pipe, _sd_text(image=_image(size=16), noise_level=20)


def _upscale_latent():
    torch.manual_seed(0)
    unet = d.UNet2DConditionModel(
        act_fn="gelu",
        attention_head_dim=8,
        norm_num_groups=None,
        block_out_channels=(32, 32, 64, 64),
        time_cond_proj_dim=128 + 8,
        conv_in_kernel=1,
        conv_out_kernel=1,
        cross_attention_dim=16,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        in_channels=8,
        mid_block_type=None,
        only_cross_attention=False,
        out_channels=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
        layers_per_block=1,
    ).eval()
    pipe = _make(
        d.StableDiffusionLatentUpscalePipeline,
        vae=_vae(),
        unet=unet,
        scheduler=d.EulerDiscreteScheduler(prediction_type="sample"),
    )
    kw = _sdxl_text(image=torch.randn(1, 4, 8, 8, generator=_g(8)), guidance_scale=3.0)
    return pipe, kw


def _pag():
    pipe = _make(
        d.StableDiffusionPAGPipeline,
        vae=_vae(),
        unet=tiny_unet("sd"),
        scheduler=_ddim(),
        pag_applied_layers=["mid", "up"],
    )
    return pipe, _sd_text(height=64, width=64, pag_scale=2.0)


def _pag_no_cfg():
    """PAG without classifier-free guidance: its processors split the batch in two (conditional | perturbed)."""
    pipe, kw = _pag()
    kw.update(guidance_scale=1.0, negative_prompt_embeds=None)
    return pipe, kw


def _sag():
    from diffusers.pipelines.deprecated.stable_diffusion_sag import StableDiffusionSAGPipeline

    pipe = _make(StableDiffusionSAGPipeline, vae=_vae(), unet=tiny_unet("sd"), scheduler=_ddim())
    return pipe, _sd_text(height=64, width=64, sag_scale=0.75)


def _panorama():
    from diffusers.pipelines.deprecated.stable_diffusion_panorama import StableDiffusionPanoramaPipeline

    unet = tiny_unet(
        "sd",
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )  # no attention over 64x64
    pipe = _make(StableDiffusionPanoramaPipeline, vae=_vae(), unet=unet, scheduler=_ddim())
    return pipe, _sd_text(height=512, width=576, num_inference_steps=4)  # latents 64x72: two 64x64 views


def _lcm():
    unet = tiny_unet("sd", time_cond_proj_dim=8)
    pipe = _make(
        d.LatentConsistencyModelPipeline,
        vae=_vae(),
        unet=unet,
        scheduler=d.LCMScheduler(**{k: v for k, v in SD_SCHEDULER.items() if k != "clip_sample"}),
    )
    return pipe, dict(
        prompt_embeds=_embeds(1, 5, 16, seed=1), num_inference_steps=4, height=64, width=64, output_type="latent"
    )


def _instruct_pix2pix():
    unet = tiny_unet("sd", in_channels=8)
    pipe = _make(d.StableDiffusionInstructPix2PixPipeline, vae=_vae(), unet=unet, scheduler=_ddim())
    pos, neg = _embeds(1, 5, 16, seed=1), _embeds(1, 5, 16, seed=2)
    return pipe, dict(
        prompt_embeds=pos, negative_prompt_embeds=neg, image=_image(), num_inference_steps=STEPS, output_type="latent"
    )


def _kandinsky22():
    unet = tiny_unet(
        "sd",
        out_channels=8,
        addition_embed_type="image",
        encoder_hid_dim_type="image_proj",
        encoder_hid_dim=12,
        class_embed_type=None,
    )
    torch.manual_seed(0)
    movq = d.VQModel(
        block_out_channels=(4, 4),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=2,
        num_vq_embeddings=8,
        vq_embed_dim=4,
    )
    pipe = _make(
        d.KandinskyV22Pipeline,
        unet=unet,
        movq=movq,
        scheduler=d.DDPMScheduler(
            beta_schedule="linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=True,
            clip_sample_range=1.0,
            prediction_type="epsilon",
            thresholding=False,
        ),
    )
    return pipe, dict(
        image_embeds=_embeds(1, 12, seed=1),
        negative_image_embeds=_embeds(1, 12, seed=2),
        height=32,
        width=32,
        num_inference_steps=STEPS,
        output_type="latent",
    )


def _if(stage):
    scheduler = d.DDPMScheduler(variance_type="learned_range", beta_schedule="squaredcos_cap_v2")
    common = dict(unet=tiny_unet(stage), scheduler=scheduler)
    kw = dict(
        prompt_embeds=_embeds(1, 5, 12, seed=1),
        negative_prompt_embeds=_embeds(1, 5, 12, seed=2),
        height=16,
        width=16,
        num_inference_steps=STEPS,
        output_type="pt",
    )
    if stage == "if_stage1":
        return _make(d.IFPipeline, **common), kw
    kw.update(image=torch.rand(1, 3, 8, 8, generator=_g(6)) * 2 - 1, noise_level=100)
    return _make(d.IFSuperResolutionPipeline, image_noising_scheduler=d.DDPMScheduler(), **common), kw


def _uncond(cls, scheduler):
    return _make(cls, unet=tiny_unet("ddpm"), scheduler=scheduler), dict(
        batch_size=2, num_inference_steps=STEPS, output_type="np"
    )


def _text2video():
    torch.manual_seed(0)
    unet = d.UNet3DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()
    pipe = _make(d.TextToVideoSDPipeline, vae=_vae(), unet=unet, scheduler=_ddim())
    return pipe, _sd_text(height=64, width=64, num_frames=2)


def _animatediff():
    unet = tiny_unet("sd")
    torch.manual_seed(0)
    adapter = d.MotionAdapter(
        block_out_channels=(8, 16, 16),
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
    )
    pipe = _make(d.AnimateDiffPipeline, vae=_vae(), unet=unet, motion_adapter=adapter, scheduler=_ddim())
    return pipe, _sd_text(height=64, width=64, num_frames=2)


def _animatediff_ip_adapter():
    pipe, kw = _animatediff()
    add_ip_adapter(pipe.unet)
    kw["ip_adapter_image_embeds"] = [torch.randn(2, 1, 8, generator=_g(9))]  # [negative, positive]
    return pipe, kw


def _animatediff_sdxl():
    torch.manual_seed(0)
    adapter = d.MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
        use_motion_mid_block=False,
    )
    pipe = _make(
        d.AnimateDiffSDXLPipeline, vae=_vae(), unet=tiny_unet("sdxl"), motion_adapter=adapter, scheduler=_ddim()
    )
    return pipe, _sdxl_text(height=64, width=64, num_frames=2)


BUILDERS = {
    "sd": _sd_t2i,
    "sd_img2img": _sd_img2img,
    "sd_img2img_dpm": _sd_img2img_dpm,
    "sd_inpaint": _sd_inpaint,
    "sdxl": _sdxl_t2i,
    "sdxl_inpaint": _sdxl_inpaint,
    "sdxl_base_denoising_end": _sdxl_base_end,
    "sdxl_refiner": _sdxl_refiner,
    "controlnet": _controlnet,
    "controlnet_multi": lambda: _controlnet(multi=True),
    "controlnet_img2img": _controlnet_img2img,
    "controlnet_sdxl": _controlnet_sdxl,
    "t2i_adapter": _t2i_adapter,
    "ip_adapter": _ip_adapter,
    "pag": _pag,
    "pag_no_cfg": _pag_no_cfg,
    "sag": _sag,
    "panorama": _panorama,
    "lcm": _lcm,
    "instruct_pix2pix": _instruct_pix2pix,
    "upscale_x4": _upscale_x4,
    "upscale_latent": _upscale_latent,
    "kandinsky22": _kandinsky22,
    "if_stage1": lambda: _if("if_stage1"),
    "if_stage2": lambda: _if("if_stage2"),
    "ddpm": lambda: _uncond(d.DDPMPipeline, d.DDPMScheduler()),
    "ddim": lambda: _uncond(d.DDIMPipeline, d.DDIMScheduler()),
    "sd_bf16": lambda: _sd_half(torch.bfloat16),
    "sd_fp16": lambda: _sd_half(torch.float16),
    "sd_compiled": _sd_compiled,
    "text2video": _text2video,
    "animatediff": _animatediff,
    "animatediff_ip_adapter": _animatediff_ip_adapter,
    "animatediff_sdxl": _animatediff_sdxl,
}
NAMES = tuple(BUILDERS)


def run(pipe, kwargs, seed: int = 0, **more) -> torch.Tensor:
    """One deterministic call; the output images, frames or latents as a float tensor."""
    out = pipe(**kwargs, **more, generator=_g(seed))
    for name in ("images", "frames"):
        if hasattr(out, name):
            x = getattr(out, name)
            return (
                torch.as_tensor(x).clone() if not isinstance(x, list) else torch.stack([torch.as_tensor(v) for v in x])
            )
    return torch.as_tensor(out[0]).clone()
