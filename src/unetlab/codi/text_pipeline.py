"""`TextCoDiPipeline`: CoDi on a latent text-to-image teacher (Mei et al. 2024, Sec. 4.1, on Stable Diffusion):
the adapted UNet samples the autoencoder's latents from a prompt and an image condition, the decoder makes the
image; classifier-free guidance on the text (Ho & Salimans 2022, Eq. 6) if asked."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .adapter import CoDiAdapter, adapted_unet
from .loss import T_MAX
from .pipeline import OUTPUT_TYPES, CoDiPipeline, condition_tensor


def prompt_list(prompt, n: int) -> list[str]:
    """`prompt` (one string, or one per condition) as a list of `n` strings; a one-line error otherwise."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompt: {type(prompt).__name__} is not a string or a list of strings")
    if len(prompts) == 1:
        return list(prompts) * n
    if len(prompts) != n:
        raise ValueError(f"prompt: {len(prompts)} prompts for {n} conditions; give one, or one per condition")
    return list(prompts)


class TextCoDiPipeline(CoDiPipeline):
    """`pipe(prompt, image=condition, num_inference_steps=4, guidance_scale=1.0, generator=..., output_type=...)`:
    `CoDiPipeline`'s samplers on the latents of `vae`, the prompt encoded by the frozen `text_encoder`. The condition
    is an image in [0, 1] (a 4x smaller scene for super-resolution; the scene with a box cut out, and its mask, for
    inpainting), given to the adapter at its own size. `guidance_scale` > 1 adds the empty prompt's output as
    classifier-free guidance (two UNet rows per image)."""

    model_cpu_offload_seq = "text_encoder->adapter->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder,
        tokenizer,
        unet,
        adapter: CoDiAdapter,
        scheduler: SchedulerMixin,
        sampler: str = "consistency",
        grid_size: int = 20,
        t_max: int = T_MAX,
        renoise: str = "fresh",
    ):
        super().__init__(unet, adapter, scheduler, sampler, grid_size, t_max, renoise)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """The text encoder's last hidden states (N, L, D) of `prompts`, padded to the tokenizer's length."""
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self._execution_device))[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt,
        image,
        num_inference_steps: int = 4,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type: {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 1:
            raise ValueError(f"guidance_scale: {guidance_scale!r}; expected a number >= 1 (1: no guidance)")
        cfg = self.adapter.config
        condition = condition_tensor(image, cfg.condition_channels, cfg.condition_size)
        n = condition.shape[0]
        prompts = prompt_list(prompt, n)
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(f"generator: {len(generator)} generators for a batch of {n} conditions")
        device, dtype = self._execution_device, self.unet.dtype
        condition = condition.to(device=device, dtype=dtype)
        text = self.encode_prompt(prompts).to(dtype)
        guided = guidance_scale > 1
        if guided:
            text = torch.cat([self.encode_prompt([""] * n).to(dtype), text])
            condition = torch.cat([condition, condition])

        def model(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if not guided:
                return adapted_unet(self.unet, self.adapter, z_t, t, condition, encoder_hidden_states=text)
            both = adapted_unet(
                self.unet, self.adapter, torch.cat([z_t, z_t]), torch.cat([t, t]), condition, encoder_hidden_states=text
            )
            uncond, cond = both.chunk(2)
            return uncond + guidance_scale * (cond - uncond)

        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        z = randn_tensor((n, self.unet.config.in_channels, *size), generator=generator, device=device, dtype=dtype)
        latents = self._sample(z, model, num_inference_steps, generator)
        decoded = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return self._output((decoded / 2 + 0.5).clamp(0, 1).float(), output_type, return_dict)
