"""CoDi on a latent text-to-image teacher: a tiny mini-sd-shaped `StableDiffusionPipeline` built in-process."""

import json

import pytest
import torch
from diffusers import StableDiffusionPipeline

import unetlab
from unetlab.cli import main
from unetlab.codi import CoDiAdapter, TextCoDiPipeline
from unetlab.data import scenes
from unetlab.models.clip_vocab import grammar_tokenizer, write_bpe_files
from unetlab.models.configs import mini_sd_text_encoder, mini_sd_unet, mini_sd_vae
from unetlab.train.latent_t2i import sd_sampling_scheduler


def tiny_sd(tmp_path):
    """A mini-sd-shaped teacher at width (16, 16, 32, 32), saved and loaded back as `train codi` loads it."""
    torch.manual_seed(0)
    tokenizer = grammar_tokenizer(scenes.vocabulary(), model_max_length=32)
    text_encoder = mini_sd_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, 32)
    pipe = StableDiffusionPipeline(
        vae=mini_sd_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=mini_sd_unet((16, 16, 32, 32), cross_attention_dim=32),
        scheduler=sd_sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = tmp_path / "teacher"
    pipe.save_pretrained(folder)
    write_bpe_files(tokenizer, folder / "tokenizer")
    return folder


def adapted(teacher, task="sr4", sampler="ddim"):
    """The teacher with a fresh CoDi adapter (zero convs: the adapted UNet is the teacher's)."""
    size = 16 if task == "sr4" else 64
    channels = 3 if task == "sr4" else 4
    adapter = CoDiAdapter.from_unet(teacher.unet, channels, size, torch.Generator().manual_seed(0))
    parts = {k: getattr(teacher, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    pipe = TextCoDiPipeline(**parts, adapter=adapter, sampler=sampler, grid_size=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_a_fresh_adapter_samples_the_teachers_images_bit_for_bit(tmp_path, guidance):
    teacher = unetlab.load(str(tiny_sd(tmp_path)))
    images, prompts, _ = scenes.sample(2, seed=1, split="test")
    low = torch.nn.functional.avg_pool2d(images, 4)
    ours = adapted(teacher)(
        prompts,
        image=low,
        num_inference_steps=3,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    plain = StableDiffusionPipeline(**{k: getattr(teacher, k) for k in teacher.components}).to("cpu")
    plain.set_progress_bar_config(disable=True)
    # the plain pipeline skips guidance at scale <= 1, as ours does
    ref = plain(
        prompts,
        num_inference_steps=3,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert ours.shape == (2, 3, 64, 64)
    assert torch.equal(ours, ref)


@pytest.mark.slow  # trains a few steps of three variants
def test_train_codi_on_a_text_teacher_resumes_exactly_and_ships_a_loadable_pipeline(tmp_path):
    teacher = tiny_sd(tmp_path)
    base = [
        "train",
        "codi",
        "--teacher",
        str(teacher),
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--grid-size",
        "4",
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2", "--checkpoint-every", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "1", "--checkpoint-every", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "2", "--checkpoint-every", "1", "--resume"]) == 0
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "checkpoint-0000002" / "student.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint-0000002" / "student.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    folder = tmp_path / "a" / "checkpoint-0000002" / "pipeline"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "TextCoDiPipeline"
    pipe = unetlab.load(str(folder))
    assert isinstance(pipe, TextCoDiPipeline) and pipe.config.sampler == "consistency"
    low = torch.nn.functional.avg_pool2d(scenes.sample(2, split="test")[0], 4)
    out = pipe("a red star", image=low, num_inference_steps=2, output_type="pt").images
    assert out.shape == (2, 3, 64, 64) and 0 <= out.min() and out.max() <= 1
    for variant, task in (("pe-codi", "inpaint"), ("controlnet", "sr4")):
        out_dir = tmp_path / variant
        assert main([*base, "--variant", variant, "--task", task, "--out", str(out_dir), "--steps", "1"]) == 0
        pipe = unetlab.load(str(out_dir / "checkpoint-0000001" / "pipeline"))
        assert pipe.adapter.config.condition_channels == (4 if task == "inpaint" else 3)


def test_bad_conditions_and_prompts_are_one_line_errors(tmp_path):
    pipe = adapted(unetlab.load(str(tiny_sd(tmp_path))), sampler="consistency")
    low = torch.rand(2, 3, 16, 16)
    cases = [
        (dict(prompt="a red star", image=torch.rand(2, 3, 64, 64)), "image: size (64, 64), expected (N, 3, 16, 16)"),
        (dict(prompt="a red star", image=low * 2), "image: values in [0"),
        (dict(prompt=["a", "b", "c"], image=low), "prompt: 3 prompts for 2 conditions"),
        (dict(prompt=3, image=low), "prompt: int is not a string"),
        (dict(prompt="a red star", image=low, guidance_scale=0.5), "guidance_scale: 0.5; expected a number >= 1"),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, TypeError)) as err:
            pipe(**kwargs, num_inference_steps=1)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--teacher", "digits", "--data", "scenes"], "data: digits is trained on digits"),
        (["--teacher", "{teacher}", "--data", "digits"], "data: {teacher} is trained on scenes"),
        (["--teacher", "digits", "--caption-dropout", "0.5"], "caption-dropout: digits has no captions"),
        (["--teacher", "{teacher}", "--caption-dropout", "1"], "caption_dropout: 1.0 must lie in [0, 1)"),
    ],
)
def test_train_codi_data_and_caption_dropout_must_fit_the_teacher(tmp_path, capsys, argv, message):
    teacher = str(tiny_sd(tmp_path))
    argv = [a.replace("{teacher}", teacher) for a in argv]
    assert main(["train", "codi", *argv, "--out", str(tmp_path / "o"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message.replace("{teacher}", teacher) in err[-1]
    assert not (tmp_path / "o").exists()


def test_eval_codi_on_scenes_reports_the_judges_rates(tmp_path):
    pipe = adapted(unetlab.load(str(tiny_sd(tmp_path))), sampler="consistency")
    folder = tmp_path / "student"
    pipe.save_pretrained(folder)
    write_bpe_files(pipe.tokenizer, folder / "tokenizer")
    out = tmp_path / "eval"
    argv = ["eval", "codi", "--data", "scenes", "--task", "sr4", "--limit", "4", "--seeds", "0", "--out", str(out)]
    assert main([*argv, "--run", f"s={folder}@1", "--bilinear", "--guidance-scale", "2"]) == 0
    rows = json.loads((out / "sr4.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["bilinear upsampling (no model)", "s"]
    for row in rows:
        assert {"all_correct", "shape", "frechet", "psnr", "consistency_psnr"} <= row["metrics"].keys()
        assert "accuracy" not in row["metrics"]
    assert "| all correct ↑ | shape ↑ |" in (out / "sr4.md").read_text()
    assert main([*argv, "--run", "d=digits-sr4-codi"]) == 2


def test_eval_codi_guidance_needs_prompts(tmp_path, capsys):
    argv = ["eval", "codi", "--task", "sr4", "--run", "d=digits-sr4-codi", "--out", str(tmp_path / "o")]
    assert main([*argv, "--guidance-scale", "3"]) == 2
    assert "guidance-scale: only --data scenes has prompts to guide" in capsys.readouterr().err
