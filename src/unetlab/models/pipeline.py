"""`ShapesPipeline`: pixel-space text-to-image sampling whose call mirrors `StableDiffusionPipeline`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ClassVar

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, SchedulerMixin, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor

from .text import TextEncoder


class ShapesPipeline(DiffusionPipeline):
    """Classifier-free-guided sampling of a pixel-space `UNet2DConditionModel` conditioned on a `TextEncoder`.

    The UNet is called once per timestep on the batch [unconditional, conditional] when `guidance_scale > 1`,
    and the scheduler is driven through `set_timesteps`/`scale_model_input`/`step`, as in diffusers' pipelines.

    `use_clipped_model_output` (schedulers whose `step` takes it: DDIM) re-derives the noise from the clipped x0
    estimate, eps = (x_t - sqrt(abar_t) clip(x0)) / sqrt(1 - abar_t), so that the DDIM update (Song et al. 2021,
    Eq. 12) moves towards the clipped x0. Left False (diffusers' default), a guided x0 estimate far outside
    [-1, 1] at the first, high-noise steps is clipped while the unclipped noise still carries it, and the step
    moves the sample away from the clipped x0: with the shipped shapes model at guidance 5 only 32.6% of the
    samples get the caption's colour (100% with True). Hence this pipeline's default is True.

    `image` (images in [0, 1], one per generated sample) turns the call into SDEdit (Meng et al. 2022, Sec. 3):
    the image is noised to the timestep `strength` of the way into the schedule, x_t = sqrt(abar_t) x_0 +
    sqrt(1 - abar_t) eps, and only the last `int(num_inference_steps * strength)` steps run, with the caption.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, unet: UNet2DConditionModel, text_encoder: TextEncoder, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    @property
    def tokenizer(self):
        return self.text_encoder.tokenizer

    def encode_prompt(self, prompt: str | list[str], num_images_per_prompt: int = 1) -> torch.Tensor:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        embeds = self.text_encoder.encode(prompts).to(self.unet.dtype)
        return embeds.repeat_interleave(num_images_per_prompt, dim=0)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        use_clipped_model_output: bool | None = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        image: torch.Tensor | None = None,
        strength: float = 0.8,
    ):
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("prompt: give exactly one of `prompt` and `prompt_embeds`")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(
                    f"callback_on_step_end_tensor_inputs: {name!r} is not one of {self._callback_tensor_inputs}"
                )
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt, num_images_per_prompt)
        batch = prompt_embeds.shape[0]
        do_cfg = guidance_scale > 1.0
        if do_cfg and negative_prompt_embeds is None:
            negative = negative_prompt if negative_prompt is not None else ""
            if isinstance(negative, str):
                negative = [negative] * (batch // num_images_per_prompt)
            if len(negative) * num_images_per_prompt != batch:
                raise ValueError(f"negative_prompt: {len(negative)} prompts for {batch // num_images_per_prompt}")
            negative_prompt_embeds = self.encode_prompt(negative, num_images_per_prompt)
        device = self._execution_device
        embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds
        embeds = embeds.to(device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        size = self.unet.config.sample_size
        shape = (batch, self.unet.config.in_channels, size, size)
        if image is not None:
            timesteps, latents = self._noised_image(image, strength, latents, shape, generator, device)
        else:
            if latents is None:
                latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
            latents = latents.to(device) * self.scheduler.init_noise_sigma
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepted}
        if use_clipped_model_output is not None and "use_clipped_model_output" in accepted:
            extra["use_clipped_model_output"] = use_clipped_model_output

        self._num_timesteps = len(timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if do_cfg:
                noise_uncond, noise_cond = noise_pred.chunk(2)
                noise_pred = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
            if callback_on_step_end is not None:
                local = {
                    "latents": latents,
                    "prompt_embeds": prompt_embeds,
                    "negative_prompt_embeds": negative_prompt_embeds,
                }
                outputs = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                latents = outputs.pop("latents", latents)
                prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                negative_prompt_embeds = outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds

        images = (
            self.image_processor.postprocess(latents, output_type=output_type) if output_type != "latent" else latents
        )
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def _noised_image(self, image, strength, latents, shape, generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(the last `int(steps * strength)` timesteps, the image noised to the first of them): SDEdit's start."""
        if latents is not None:
            raise ValueError("latents: give either `image` (SDEdit) or `latents`, not both")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ValueError(f"strength: expected a number in (0, 1], got {strength!r}")
        x0 = self.image_processor.preprocess(image).to(device=device, dtype=self.unet.dtype)
        if tuple(x0.shape[1:]) != shape[1:] or len(x0) not in (1, shape[0]):
            raise ValueError(
                f"image: shape {tuple(x0.shape)} is not (1 or {shape[0]}, {', '.join(map(str, shape[1:]))})"
            )
        order = self.scheduler.order
        n_run = int(len(self.scheduler.timesteps) // order * strength)
        if n_run < 1:
            raise ValueError(
                f"strength: {strength} of {len(self.scheduler.timesteps) // order} steps runs no step; "
                "raise strength or num_inference_steps"
            )
        start = len(self.scheduler.timesteps) - n_run * order
        timesteps = self.scheduler.timesteps[start:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        return timesteps, self.scheduler.add_noise(x0.expand(shape), noise, timesteps[:1].repeat(shape[0]))
