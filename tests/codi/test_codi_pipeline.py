import numpy as np
import PIL.Image
import pytest
import torch

import unetlab
from helpers.codi_tiny import adapter_for, tiny_teacher
from unetlab.codi import CoDiPipeline, adapted_unet
from unetlab.codi.consistency import alpha_sigma, consistency_function, predicted_x0, sampling_timesteps


def _pipe(sampler="consistency", channels=1, size=2, renoise="fresh"):
    teacher = tiny_teacher()
    adapter = adapter_for(teacher.unet, channels=channels, size=size, seed=1)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # a trained-looking adapter: the residual paths are live
        for conv in [*adapter.zero_convs, adapter.mid_zero_conv, adapter.condition_embedding[-1]]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.1)
    pipe = CoDiPipeline(
        unet=teacher.unet,
        adapter=adapter,
        scheduler=teacher.scheduler,
        sampler=sampler,
        grid_size=8,
        renoise=renoise,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _condition(n=3, channels=1, size=2, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sampler, steps", [("consistency", 1), ("consistency", 4), ("ddim", 6)])
def test_round_trip_through_save_pretrained_gives_identical_outputs(tmp_path, sampler, steps):
    pipe = _pipe(sampler)
    cond = _condition()
    out = pipe(image=cond, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt")
    images = out.images
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    pipe.save_pretrained(tmp_path / "p")
    for loaded in (CoDiPipeline.from_pretrained(tmp_path / "p"), unetlab.load(tmp_path / "p")):
        assert loaded.config.sampler == sampler and loaded.config.grid_size == 8 and loaded.config.renoise == "fresh"
        again = loaded(
            image=cond, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt"
        ).images
        assert torch.equal(again, images)
    # the condition matters, and another seed gives other outputs (the equalities above can fail)
    other = pipe(
        image=_condition(seed=9),
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert not torch.equal(other, images)


def test_pil_and_tensor_conditions_and_output_types_agree():
    pipe = _pipe()
    cond = torch.randint(0, 256, (2, 1, 2, 2), generator=torch.Generator().manual_seed(1)).float() / 255
    pils = [PIL.Image.fromarray((c[0].numpy() * 255).round().astype(np.uint8), mode="L") for c in cond]
    kw = dict(num_inference_steps=2)
    pt = pipe(image=cond, generator=torch.Generator().manual_seed(0), output_type="pt", **kw).images
    from_pil = pipe(image=pils, generator=torch.Generator().manual_seed(0), output_type="pt", **kw).images
    assert torch.equal(pt, from_pil)
    arr = pipe(image=cond, generator=torch.Generator().manual_seed(0), output_type="np", **kw).images
    assert arr.shape == (2, 8, 8, 1) and np.array_equal(arr, pt.permute(0, 2, 3, 1).numpy())
    pil = pipe(image=cond, generator=torch.Generator().manual_seed(0), **kw).images
    assert isinstance(pil[0], PIL.Image.Image) and pil[0].size == (8, 8)


@pytest.mark.parametrize(
    "image, match",
    [
        (torch.rand(2, 1, 3, 3), "image: size"),
        (torch.rand(2, 2, 2, 2), "image: 2 channel"),
        (torch.randint(0, 255, (2, 1, 2, 2), dtype=torch.uint8), "image: dtype torch.uint8"),
        (torch.rand(1, 2, 2), "image: shape"),
        (torch.rand(0, 1, 2, 2), "image: shape"),
        (torch.rand(2, 1, 2, 2) * 3, "image: values"),
        ([PIL.Image.new("L", (3, 3))], "image: PIL sizes"),
        ([PIL.Image.new("RGB", (2, 2))], "image: PIL modes"),
        ("cat.png", "image: str"),
    ],
)
def test_bad_conditions_get_one_line_errors(image, match):
    pipe = _pipe()
    with pytest.raises((ValueError, TypeError), match=match) as err:
        pipe(image=image, num_inference_steps=1)
    assert "\n" not in str(err.value)


def test_bad_batch_of_generators_steps_and_output_type():
    pipe = _pipe()
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    with pytest.raises(ValueError, match="generator: 2 generators for a batch of 3"):
        pipe(image=_condition(), generator=gens)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(image=_condition(), num_inference_steps=9)
    with pytest.raises(ValueError, match="output_type"):
        pipe(image=_condition(), output_type="latent")


@torch.no_grad()
def _reference(pipe, cond, steps, seed, renoise):
    """K-step consistency sampling written out: f at each step, then z_s = alpha_s f + sigma_s eps."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(cond), 1, 8, 8, generator=g)
    ac = pipe.scheduler.alphas_cumprod
    timesteps = sampling_timesteps(8, pipe.config.t_max, steps).tolist()
    for i, timestep in enumerate(timesteps):
        t = torch.full((len(z),), timestep, dtype=torch.long)
        alpha_t, sigma_t = alpha_sigma(ac, t, z)
        x_hat = predicted_x0(adapted_unet(pipe.unet, pipe.adapter, z, t, cond), z, alpha_t, sigma_t, "epsilon")
        f = consistency_function(z, x_hat, t)
        if i + 1 < len(timesteps):
            alpha_s, sigma_s = alpha_sigma(ac, torch.full_like(t, timesteps[i + 1]), z)
            eps = torch.randn(z.shape, generator=g) if renoise == "fresh" else (z - alpha_t * f) / sigma_t
            z = alpha_s * f + sigma_s * eps
    return (f / 2 + 0.5).clamp(0, 1)


@pytest.mark.parametrize("renoise", ["fresh", "ddim"])
def test_consistency_sampler_renoises_with_fresh_or_implied_noise(renoise):
    pipe, cond = _pipe(renoise=renoise), _condition()
    out = pipe(image=cond, num_inference_steps=4, generator=torch.Generator().manual_seed(5), output_type="pt").images
    torch.testing.assert_close(out, _reference(pipe, cond, 4, 5, renoise))
    other = "ddim" if renoise == "fresh" else "fresh"
    assert not torch.allclose(out, _reference(pipe, cond, 4, 5, other), atol=1e-4)
    one = pipe(image=cond, num_inference_steps=1, generator=torch.Generator().manual_seed(5), output_type="pt").images
    torch.testing.assert_close(one, _reference(pipe, cond, 1, 5, other))  # no renoising with one step
    with pytest.raises(ValueError, match="renoise: 'sde' is not one of fresh, ddim"):
        CoDiPipeline(unet=pipe.unet, adapter=pipe.adapter, scheduler=pipe.scheduler, renoise="sde")


def test_inpainting_keeps_the_known_pixels_in_every_estimate():
    pipe = _pipe(channels=2, size=8)
    image = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(3, 1, 8, 8)
    mask[:, :, 2:6, 1:5] = 1
    cond = torch.cat([image * (1 - mask), mask], dim=1)

    def run(steps, **kw):
        g = torch.Generator().manual_seed(5)
        return pipe(image=cond, num_inference_steps=steps, generator=g, output_type="pt", **kw).images

    out, free = run(4), run(4, blend_known=False)
    # the known pixels are the condition's up to two float32 roundings of (2c - 1) / 2 + 0.5
    torch.testing.assert_close(out * (1 - mask), image * (1 - mask), atol=1e-6, rtol=0)
    assert not torch.allclose(free * (1 - mask), image * (1 - mask), atol=1e-2)
    # the box differs from the unblended run: later steps saw the known pixels
    assert not torch.allclose(out * mask, free * mask, atol=1e-4)
    # one step: the box is the unblended estimate's
    torch.testing.assert_close(run(1) * mask, run(1, blend_known=False) * mask)
    with pytest.raises(TypeError, match="blend_known: 'yes' is not True or False"):
        run(1, blend_known="yes")


def test_blend_known_leaves_super_resolution_alone():
    pipe, cond = _pipe(), _condition()
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    a = pipe(image=cond, num_inference_steps=4, generator=g[0], output_type="pt").images
    b = pipe(image=cond, num_inference_steps=4, generator=g[1], output_type="pt", blend_known=False).images
    assert torch.equal(a, b)
