import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

import unetlab
from unetlab.loading import load
from unetlab.models import ShapesPipeline, WordTokenizer
from unetlab.models.text import shapes_vocabulary
from unetlab.testing import tiny_shapes_pipeline

PROMPT = "a red circle at the top left on a blue background"


def run(pipe, **kw):
    args = {"num_inference_steps": 3, "generator": torch.Generator().manual_seed(0), "output_type": "pt"}
    args.update(kw)
    return pipe(PROMPT, **args).images


def test_save_load_round_trip_gives_identical_images(tmp_path):
    pipe = tiny_shapes_pipeline()
    before = run(pipe)
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["text_encoder"] == ["unetlab.models.text", "TextEncoder"]
    for loaded in (ShapesPipeline.from_pretrained(tmp_path / "p"), load(tmp_path / "p")):
        assert isinstance(loaded.scheduler, DDIMScheduler)
        assert torch.equal(run(loaded), before)
    assert before.shape == (1, 3, 8, 8) and 0 <= float(before.min()) and float(before.max()) <= 1


def test_unet_called_once_per_step_on_the_cfg_batch():
    pipe = tiny_shapes_pipeline()
    batches = []
    pipe.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    run(pipe, guidance_scale=5.0, num_images_per_prompt=2)
    assert batches == [4, 4, 4]
    batches.clear()
    images = run(pipe, guidance_scale=1.0, num_images_per_prompt=2)
    assert batches == [2, 2, 2] and images.shape[0] == 2


def test_guidance_negative_prompt_and_callback_change_the_result():
    pipe = tiny_shapes_pipeline()
    base = run(pipe)
    assert not torch.equal(run(pipe, guidance_scale=1.0), base)
    assert not torch.equal(run(pipe, negative_prompt="a blue square at the center on a red background"), base)
    seen = []

    def callback(p, i, t, kwargs):
        seen.append(i)
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = run(pipe, callback_on_step_end=callback)
    assert seen == [0, 1, 2] and torch.allclose(out, torch.full_like(out, 0.5))
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        run(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"])
    pil = pipe(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert pil[0].size == (8, 8)


def test_guided_step_moves_towards_the_clipped_x0():
    """A guided x0 estimate of 2.5 (x0_u = 0, x0_c = 0.5, guidance 5) at the first step: with
    use_clipped_model_output (the default) DDIM lands at sqrt(abar') * 1 + sqrt(1 - abar') * eps(clip(x0))
    (Song et al. 2021, Eq. 12); without it, the unclipped noise moves the sample away from the clipped x0."""
    pipe = tiny_shapes_pipeline()
    abar = pipe.scheduler.alphas_cumprod

    def fixed_x0(module, args, kwargs, output):
        x_t, t = args[0], int(args[1])
        x0 = torch.cat([torch.zeros_like(x_t[:1]), torch.full_like(x_t[1:], 0.5)])
        return ((x_t - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt(),)

    pipe.unet.register_forward_hook(fixed_x0, with_kwargs=True)
    first = {}

    def keep(p, i, t, kwargs):
        first.setdefault("t", int(t))
        first.setdefault("latents", kwargs["latents"])
        return {}

    x_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    shifts = {}
    for clipped in (True, False):
        first.clear()
        run(
            pipe,
            num_inference_steps=10,
            guidance_scale=5.0,
            latents=x_T.clone(),
            callback_on_step_end=keep,
            **({} if clipped else {"use_clipped_model_output": False}),
        )
        t, t_prev = first["t"], first["t"] - 100
        a, s, a_prev, s_prev = abar[t].sqrt(), (1 - abar[t]).sqrt(), abar[t_prev].sqrt(), (1 - abar[t_prev]).sqrt()
        shifts[clipped] = float((first["latents"] - s_prev / s * x_T).mean())
        if clipped:
            torch.testing.assert_close(first["latents"], a_prev + s_prev * (x_T - a) / s)
    assert shifts[True] > 0 > shifts[False]


def test_tokenizer():
    tok = WordTokenizer(shapes_vocabulary(), 12)
    ids = tok([PROMPT, ""])
    assert ids.shape == (2, 12) and ids[1, 0] == tok.ids["<bos>"] and (ids[1, 1:] == tok.ids["<pad>"]).all()
    assert tok(["a purple circle"])[0, 2] == tok.ids["<unk>"] and tok.unknown_words("a purple circle") == ["purple"]
    with pytest.raises(ValueError, match="prompt"):
        tok([" ".join(["a"] * 12)])


def test_load_digits_style_ddim_pipeline(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    DDIMPipeline(unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "d")
    pipe = unetlab.load(str(tmp_path / "d"))
    assert isinstance(pipe, DDIMPipeline) and isinstance(pipe.scheduler, DDIMScheduler)
    a = pipe(batch_size=2, generator=torch.Generator().manual_seed(1), num_inference_steps=2, output_type="np").images
    b = pipe(batch_size=2, generator=torch.Generator().manual_seed(1), num_inference_steps=2, output_type="np").images
    assert a.shape == (2, 8, 8, 1) and (a == b).all()


def test_load_errors(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="Hugging Face Hub could not provide it") as info:
        load("someone/not-a-real-model-xyz")
    assert "\n" not in str(info.value)
