"""The shipped CoDi models load by name, are small, and restore or inpaint held-out digits in 4 steps."""

import pytest
import torch

import unetlab
from unetlab.codi import condition_consistency, heldout_conditions
from unetlab.data import DigitsDataset
from unetlab.metrics import mean_psnr
from unetlab.models.registry import CODI_MODELS, weights_path


@pytest.mark.parametrize("name", CODI_MODELS)
def test_shipped_codi_model_loads_and_beats_its_condition(name):
    folder = weights_path(name)
    size = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert size <= 10e6
    card = (folder / "README.md").read_text()
    assert "## Quality" in card and "unetlab train codi" in card and "PSNR" in card
    pipe = unetlab.load(name)
    assert pipe.unet.dtype == torch.float32 and pipe.config.sampler == "consistency"
    task = name.split("-")[1]
    images = DigitsDataset("test", 16).images[:16]
    condition = heldout_conditions(task, images)
    out = pipe(
        image=condition, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).images
    assert out.shape == images.shape
    # closer to the truth than the trivial guess (the condition itself, upsampled or with the box left black)
    trivial = (
        torch.nn.functional.interpolate(condition, size=(16, 16), mode="bilinear")
        if task == "sr4"
        else condition[:, :1]
    )
    assert mean_psnr(out, images) > mean_psnr(trivial, images) + 1.0
    assert condition_consistency(task, out, condition) > 20.0
