"""`CoDiPipeline`: image-conditioned sampling of a UNet with a CoDi adapter; 1-4-step consistency sampling
(Mei et al. 2024, Sec. 3.4; fresh noise between steps as in Song et al. 2023, Alg. 1, or the deterministic DDIM step)
or, for the plainly fine-tuned adapter (ControlNet baseline), DDIM."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .adapter import CoDiAdapter, adapted_unet
from .consistency import (
    alpha_sigma,
    consistency_function,
    ddim_step,
    implied_noise,
    predicted_x0,
    sampling_timesteps,
    timestep_grid,
)
from .loss import T_MAX

SAMPLERS = ("consistency", "ddim")
RENOISE = ("fresh", "ddim")
OUTPUT_TYPES = ("pil", "np", "pt")


def condition_tensor(image, channels: int, size: int) -> torch.Tensor:
    """`image` (PIL image(s), or a float tensor (N, C, h, w) in [0, 1]) as a float32 tensor, checked against the
    adapter's (channels, size); one-line errors name what would be valid."""
    expected = f"(N, {channels}, {size}, {size}) float in [0, 1]"
    if isinstance(image, PIL.Image.Image):
        image = [image]
    if isinstance(image, (list, tuple)) and image and all(isinstance(i, PIL.Image.Image) for i in image):
        arrays = [np.asarray(i) for i in image]
        if any(a.shape[:2] != (size, size) for a in arrays):
            raise ValueError(f"image: PIL sizes {[i.size for i in image]} are not {size}x{size}")
        arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
        if any(a.shape[-1] != channels for a in arrays):
            raise ValueError(f"image: PIL modes {[i.mode for i in image]} do not have {channels} channel(s)")
        return _standard_layout(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255)
    if not torch.is_tensor(image):
        raise TypeError(f"image: {type(image).__name__} is not a PIL image, a list of them, or a tensor {expected}")
    if not image.is_floating_point():
        raise TypeError(f"image: dtype {image.dtype} is not floating point; expected {expected}")
    if image.ndim != 4 or image.shape[0] == 0:
        raise ValueError(f"image: shape {tuple(image.shape)} is not a non-empty batch {expected}")
    if image.shape[1] != channels:
        raise ValueError(f"image: {image.shape[1]} channel(s), expected {expected}")
    if tuple(image.shape[2:]) != (size, size):
        raise ValueError(f"image: size {tuple(image.shape[2:])}, expected {expected}")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"image: values in [{float(image.min()):.3g}, {float(image.max()):.3g}], expected {expected}")
    return _standard_layout(image.float())


def _standard_layout(x: torch.Tensor) -> torch.Tensor:
    """A copy with row-major strides even along size-1 dims: CPU convolutions pick their kernel by the strides."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)


class CoDiPipeline(DiffusionPipeline):
    """`pipe(image=condition, num_inference_steps=4, generator=..., output_type="pil"|"np"|"pt")`.

    `sampler="consistency"`: K evenly spaced points of the training grid (N = `grid_size`, top `t_max`), at each the
    consistency function f(z_t, t) = c_skip z_t + c_out x_hat; the last f is the output, before it
    z_s = alpha_s f + sigma_s eps with `renoise="fresh"` eps ~ N(0, I) (as training's z_hat_s, whose noise is
    independent of x_hat) or `renoise="ddim"` the implied eps = (z_t - alpha_t f) / sigma_t (deterministic: it carries
    what f does not explain into the next step). `sampler="ddim"`: the adapted UNet's output driven through
    `DDIMScheduler` at any step count. Randomness: all from `generator`. An inpainting condition's known pixels are
    kept in every x_0 estimate of the consistency sampler (`blend_known`, default on; as diffusers' inpainting
    pipelines blend the known region back at each step).
    """

    model_cpu_offload_seq = "adapter->unet"

    def __init__(
        self,
        unet,
        adapter: CoDiAdapter,
        scheduler: SchedulerMixin,
        sampler: str = "consistency",
        grid_size: int = 20,
        t_max: int = T_MAX,
        renoise: str = "fresh",
    ):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
        if renoise not in RENOISE:
            raise ValueError(f"renoise: {renoise!r} is not one of {', '.join(RENOISE)}")
        steps = scheduler.config.num_train_timesteps
        if isinstance(t_max, bool) or not isinstance(t_max, int) or not 1 <= t_max < steps:
            raise ValueError(
                f"t_max: expected a training timestep of the scheduler's {steps}, 1 to {steps - 1}; got {t_max!r}"
            )
        timestep_grid(grid_size, t_max)
        self.register_modules(unet=unet, adapter=adapter, scheduler=scheduler)
        self.register_to_config(sampler=sampler, grid_size=grid_size, t_max=t_max, renoise=renoise)

    @torch.no_grad()
    def __call__(
        self,
        image,
        num_inference_steps: int = 4,
        generator: torch.Generator | list | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        blend_known: bool = True,
    ):
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type: {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        if not isinstance(blend_known, bool):
            raise TypeError(f"blend_known: {blend_known!r} is not True or False")
        cfg = self.adapter.config
        condition = condition_tensor(image, cfg.condition_channels, cfg.condition_size)
        n = condition.shape[0]
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(f"generator: {len(generator)} generators for a batch of {n} conditions")
        device, dtype = self._execution_device, self.unet.dtype
        condition = condition.to(device=device, dtype=dtype)
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        z = randn_tensor((n, self.unet.config.in_channels, *size), generator=generator, device=device, dtype=dtype)
        known = self._known(condition) if blend_known else None
        x = self._sample(
            z,
            lambda z_t, t: adapted_unet(self.unet, self.adapter, z_t, t, condition),
            num_inference_steps,
            generator,
            known,
        )
        return self._output((x / 2 + 0.5).clamp(0, 1), output_type, return_dict)

    def _known(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(the known pixels in [-1, 1], 1 where known) of an inpainting condition [image * (1 - m), m] (`degrade`'s
        layout: one channel more than the images, at their size); None for other conditions."""
        size = self.unet.config.sample_size
        inpainting = condition.shape[1] == self.unet.config.in_channels + 1 and condition.shape[-1] == size
        if not inpainting:
            return None
        return condition[:, :-1] * 2 - 1, 1 - condition[:, -1:]

    def _sample(self, z: torch.Tensor, model, num_inference_steps: int, generator, known=None) -> torch.Tensor:
        """The sampler's x_0 from the initial noise `z`; `model(z_t, t)` is the adapted UNet's output; `known`
        (consistency sampler): pixels every x_0 estimate keeps (`_known`)."""
        if self.config.sampler == "consistency":
            return self._consistency(z, model, num_inference_steps, generator, known)
        return self._ddim(z, model, num_inference_steps)

    def _output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        """Images (N, C, H, W) in [0, 1] as `output_type` asks."""
        if output_type == "pt":
            out = images
        else:
            out = images.permute(0, 2, 3, 1).float().cpu().numpy()
            if output_type == "pil":
                out = self.numpy_to_pil(out)
        return ImagePipelineOutput(images=out) if return_dict else (out,)

    def _consistency(self, z: torch.Tensor, model, num_inference_steps: int, generator, known=None) -> torch.Tensor:
        alphas_cumprod = self.scheduler.alphas_cumprod
        prediction_type = self.scheduler.config.prediction_type
        timesteps = sampling_timesteps(self.config.grid_size, self.config.t_max, num_inference_steps)
        f = z
        for i, timestep in enumerate(self.progress_bar(timesteps.tolist())):
            t = torch.full((z.shape[0],), timestep, dtype=torch.long, device=z.device)
            alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, z)
            output = model(z, t)
            f = consistency_function(z, predicted_x0(output, z, alpha_t, sigma_t, prediction_type), t)
            if known is not None:  # zero-shot inpainting of consistency models (Song et al. 2023, Alg. 4)
                x_known, keep = known
                f = keep * x_known + (1 - keep) * f
            if i + 1 < len(timesteps):
                alpha_s, sigma_s = alpha_sigma(alphas_cumprod, torch.full_like(t, int(timesteps[i + 1])), z)
                if self.config.renoise == "fresh":
                    eps = randn_tensor(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                else:
                    eps = implied_noise(z, f, alpha_t, sigma_t)
                z = ddim_step(f, eps, alpha_s, sigma_s)
        return f

    def _ddim(self, z: torch.Tensor, model, num_inference_steps: int) -> torch.Tensor:
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=z.device)
        for timestep in self.progress_bar(scheduler.timesteps):
            t = torch.full((z.shape[0],), int(timestep), dtype=torch.long, device=z.device)
            output = model(z, t)
            z = scheduler.step(output, timestep, z).prev_sample
        return z
