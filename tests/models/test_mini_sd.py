"""`mini-sd`'s parts: the grammar's CLIP tokenizer, SD-1.5's UNet topology, the latent text-to-image task saved
as a plain `StableDiffusionPipeline` that diffusers loads without unetlab, and exact resume of both stages."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

import unetlab
from unetlab.cli import main
from unetlab.data import scenes
from unetlab.models.clip_vocab import bpe_merges, grammar_tokenizer, write_bpe_files
from unetlab.models.configs import mini_sd_unet, mini_sd_vae

SD15_DECODER_SHARE = 67.5  # % of SD-1.5's UNet FLOPs in its decoder (REFERENCE.md)


def test_every_grammar_word_is_one_token_and_captions_round_trip(tmp_path):
    tok = grammar_tokenizer(scenes.vocabulary(), model_max_length=32)
    for word in scenes.vocabulary():
        ids = tok(word).input_ids
        assert len(ids) == 3 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id, word
        assert tok.decode(ids, skip_special_tokens=True) == word
    _, captions, _ = scenes.sample(20, seed=5, split="test")
    for caption in captions:
        ids = tok(caption).input_ids
        assert len(ids) == len(caption.split()) + 2 <= 32
        assert tok.decode(ids, skip_special_tokens=True) == caption
    # what older transformers' slow tokenizer reads: vocab.json + merges.txt alone
    tok.save_pretrained(tmp_path)
    write_bpe_files(tok, tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again(captions).input_ids == tok(captions).input_ids


def test_merges_never_split_a_word_already_whole():
    words = ["ring", "triangle", "star", "striped", "stripes", "tri"]
    tok = grammar_tokenizer(words, 8)
    for w in words:
        assert len(tok(w).input_ids) == 3, w
    with pytest.raises(ValueError, match="words: 'Red' is not a lower-case word"):
        bpe_merges(["Red"])


def test_the_unet_has_sd15_topology_and_decoder_share():
    unet = mini_sd_unet()
    cfg = unet.config
    assert cfg.down_block_types == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert cfg.up_block_types == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert cfg.mid_block_type == "UNetMidBlock2DCrossAttn"
    assert cfg.layers_per_block == 2 and cfg.in_channels == cfg.out_channels == 4 and cfg.sample_size == 16
    assert abs(100 * unetlab.anatomy(unet).share_of("decoder") - SD15_DECODER_SHARE) <= 10


def _tiny_stages(tmp_path):
    torch.manual_seed(0)
    vae = mini_sd_vae()
    vae.save_pretrained(tmp_path / "vae")
    return [
        "train",
        "t2i",
        "--data",
        "scenes",
        "--vae",
        str(tmp_path / "vae"),
        "--block-channels",
        "16,16,32,32",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--sample-steps",
        "2",
    ]


@pytest.mark.slow  # spawns a process
def test_t2i_on_scenes_resumes_exactly_and_saves_a_plain_sd_pipeline(tmp_path):
    base = _tiny_stages(tmp_path)
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2", "--checkpoint-every", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "1", "--checkpoint-every", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "2", "--checkpoint-every", "1", "--resume"]) == 0
    from safetensors.torch import load_file

    for name in ("unet", "text_encoder"):
        a = load_file(tmp_path / "a" / "checkpoint-0000002" / f"{name}.safetensors")
        b = load_file(tmp_path / "b" / "checkpoint-0000002" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    folder = tmp_path / "a" / "checkpoint-0000002" / "pipeline"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert all(v[0] in ("diffusers", "transformers", None) for k, v in index.items() if isinstance(v, list))
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    prompt = scenes.sample(1, split="test")[1][0]
    ours = pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    script = (
        "import sys, numpy, torch\n"
        "from diffusers import StableDiffusionPipeline\n"
        f"pipe = StableDiffusionPipeline.from_pretrained({str(folder)!r})\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        f"out = pipe({prompt!r}, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type='np')\n"
        f"numpy.save({str(tmp_path / 'plain.npy')!r}, out.images)\n"
        "assert not any(m.startswith('unetlab') for m in sys.modules), 'unetlab was imported'\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    import numpy

    assert numpy.array_equal(numpy.load(tmp_path / "plain.npy"), ours)


def test_autoencoder_stage_resumes_exactly_and_sets_the_scaling_factor(tmp_path):
    base = [
        "train",
        "autoencoder",
        "--data",
        "scenes",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2", "--checkpoint-every", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "1", "--checkpoint-every", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--steps", "2", "--checkpoint-every", "1", "--resume"]) == 0
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "checkpoint-0000002" / "vae.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint-0000002" / "vae.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    from diffusers import AutoencoderKL

    from unetlab.train.autoencoder import AutoencoderTask

    vae = AutoencoderKL.from_pretrained(tmp_path / "a" / "checkpoint-0000002" / "pipeline")
    images = scenes.sample(256, seed=0, split="test")[0]
    with torch.no_grad():
        z = vae.encode(images * 2 - 1).latent_dist.mean
    assert vae.config.scaling_factor == pytest.approx(1 / float(z.std()), rel=1e-5)
    assert isinstance(AutoencoderTask, type)


def test_decoder_only_keeps_the_encoder_and_its_latents_bit_for_bit(tmp_path):
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    base = ["train", "autoencoder", "--data", "scenes", "--batch-size", "2", "--warmup", "1", "--threads", "1"]
    assert main([*base, "--no-progress", "--out", str(tmp_path / "a"), "--steps", "1", "--checkpoint-every", "1"]) == 0
    init = tmp_path / "init"  # a pipeline folder holding the autoencoder as its `vae`, as mini-sd's
    shutil.copytree(tmp_path / "a" / "checkpoint-0000001" / "pipeline", init / "vae")
    (init / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    tuned = tmp_path / "d"
    argv = [*base, "--no-progress", "--out", str(tuned), "--steps", "2", "--checkpoint-every", "2", "--lr", "1e-2"]
    assert main([*argv, "--init-from", str(init), "--decoder-only"]) == 0
    a = AutoencoderKL.from_pretrained(init / "vae")
    b = AutoencoderKL.from_pretrained(tuned / "checkpoint-0000002" / "pipeline")
    sa, sb = a.state_dict(), b.state_dict()
    frozen = [k for k in sa if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(sa[k], sb[k]) for k in frozen)
    assert not all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("decoder."))
    assert b.config.scaling_factor == a.config.scaling_factor
    weights = load_file(tuned / "checkpoint-0000002" / "vae.safetensors")  # the trained (online) weights too
    assert all(torch.equal(weights[k], sa[k]) for k in frozen)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "autoencoder", "--data", "scenes", "--out", "{tmp}/o", "--decoder-only"],
            "decoder-only: fine-tunes the decoder of an existing autoencoder; give --init-from",
        ),
        (["train", "t2i", "--data", "scenes", "--out", "{tmp}/o"], "vae: t2i on scenes trains in the latent space"),
        (["train", "t2i", "--data", "scenes", "--out", "{tmp}/o", "--vae", "{tmp}/none"], "vae: {tmp}/none is not an"),
        (
            ["train", "t2i", "--data", "shapes", "--out", "{tmp}/o", "--vae", "{tmp}"],
            "vae, block-channels: only t2i on",
        ),
        (["train", "autoencoder", "--data", "digits", "--out", "{tmp}/o"], "data: autoencoder trains mini-sd's"),
        (["train", "judge", "--data", "shapes", "--out", "{tmp}/o"], "data: judge trains mini-sd's judge"),
    ],
)
def test_bad_stage_options_are_one_line_errors(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message.replace("{tmp}", str(tmp_path)) in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_block_channels_must_be_four_multiples_of_16(tmp_path, capsys):
    for bad in ("32,64,128", "32,64,128,100", "a,b,c,d", "0,16,16,16"):
        assert main(["train", "t2i", "--data", "scenes", "--out", str(tmp_path / "o"), "--block-channels", bad]) == 2
        assert "argument --block-channels: expected four" in capsys.readouterr().err
