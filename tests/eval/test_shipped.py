"""Checks on the shipped classifiers and models (skipped where their weights are not in the checkout)."""

import pytest
import torch

from unetlab.data import heldout_captions
from unetlab.eval import accuracy, frechet_distance
from unetlab.eval.classifier import heldout_data, load_classifier, weights_dir
from unetlab.train.classifier import heldout_accuracy


def shipped(name):
    return (weights_dir(name) / "config.json").is_file()


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_shipped_classifier_is_95_percent_accurate_on_heldout_data(name):
    if not shipped(name):
        pytest.skip(f"no shipped {name} classifier")
    acc = heldout_accuracy(load_classifier(name), name, n=500)
    assert min(acc.values()) >= 0.95, acc


@pytest.mark.skipif(not shipped("shapes"), reason="no shipped shapes classifier")
def test_accuracy_and_frechet_on_real_heldout_shapes():
    images, _ = heldout_data("shapes", n=200, seed=0)
    prompts = heldout_captions(200, seed=0)
    acc = accuracy("shapes", images, prompts)
    assert acc["shape"] >= 0.95 and acc["colour"] >= 0.95 and acc["overall"] >= 0.8
    # the same images against shuffled prompts: accuracy collapses
    wrong = accuracy("shapes", images, prompts[1:] + prompts[:1])
    assert wrong["overall"] < 0.2
    real_fd = frechet_distance("shapes", images)
    noise_fd = frechet_distance("shapes", torch.rand(200, 3, 24, 24, generator=torch.Generator().manual_seed(0)))
    assert real_fd < noise_fd / 10


@pytest.mark.skipif(not shipped("digits"), reason="no shipped digits classifier")
def test_digit_confidence_on_real_and_noise():
    images, targets = heldout_data("digits")
    acc = accuracy("digits", images, targets["digit"])
    assert acc["confident"] >= 0.9 and acc["classes_present"] == 10 and acc["accuracy"] >= 0.95
    noise = accuracy("digits", torch.rand(100, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert noise["confident"] < acc["confident"]


@pytest.mark.skipif(
    not (weights_dir("digits").parent / "digits" / "model_index.json").is_file(), reason="no shipped digits model"
)
def test_shipped_digits_model_loads_as_diffusers_pipelines():
    from diffusers import DDIMScheduler, DDPMPipeline

    import unetlab

    path = weights_dir("digits").parent / "digits"
    ddpm = DDPMPipeline.from_pretrained(path)
    assert ddpm.unet.config.sample_size == 16 and ddpm.unet.config.in_channels == 1
    size = sum(p.stat().st_size for p in path.rglob("*.safetensors"))
    assert size <= 10e6
    pipe = unetlab.load("digits")
    assert isinstance(pipe.scheduler, DDIMScheduler)
    a = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
    b = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
    assert (a == b).all()


@pytest.mark.skipif(
    not (weights_dir("shapes").parent / "shapes" / "model_index.json").is_file(), reason="no shipped shapes model"
)
def test_shipped_shapes_model_loads_and_is_deterministic():
    import unetlab
    from unetlab.models import ShapesPipeline

    path = weights_dir("shapes").parent / "shapes"
    assert sum(p.stat().st_size for p in path.rglob("*.safetensors")) <= 10e6
    pipe = unetlab.load("shapes")
    assert isinstance(pipe, ShapesPipeline) and pipe.unet.config.sample_size == 24
    prompt = "a red circle at the top left on a blue background"
    a = pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    b = ShapesPipeline.from_pretrained(path)(
        prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).images
    assert a.shape == (1, 3, 24, 24) and torch.equal(a, b)
