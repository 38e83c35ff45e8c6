"""Ship `mini-sd` and its judge into the package (src/unetlab/models/weights/{mini-sd,judge-mini-sd}/).

    python scripts/ship_mini_sd.py judge runs/judge
    python scripts/ship_mini_sd.py model runs/mini-sd --vae-run runs/vae --quality runs/q50.json runs/q10.json
    python scripts/ship_mini_sd.py model runs/mini-sd2 --quality ...   # a run continued with --init-from mini-sd

`judge`: the run's latest EMA judge, its scores on real test-split scenes and the reference statistics of the
Fréchet distance. `model`: the run's latest EMA pipeline in float16 (a plain `StableDiffusionPipeline`), a model
card with the runs' commands and histories and the quality files, and a sample grid. A run continued from the
shipped weights (`--init-from mini-sd`) keeps the shipped autoencoder and adds its history to the shipped card's
(no `--vae-run`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from unetlab import atomic
from unetlab.checkpoint import latest
from unetlab.data import scenes
from unetlab.eval.judge import score_scenes
from unetlab.eval.mini_sd import reference_stats
from unetlab.models.clip_vocab import write_bpe_files
from unetlab.models.judge import SceneJudge
from unetlab.models.registry import weights_path
from unetlab.train.grid import save_grid


def _history(run: Path) -> dict:
    state = json.loads((latest(run) / "state.json").read_text())
    config = {k: v for k, v in state["config"].items() if k not in ("out", "progress", "resume")}
    runs = str(run.resolve().parent) + "/"  # folders of the runs named relative to their parent, not this machine
    return {
        "step": state["step"],
        "elapsed_s": round(state["elapsed_s"]),
        "history": state["history"][-1],
        "config": json.loads(json.dumps(config).replace(runs, "runs/")),
    }


def _drop_source_paths(folder: Path) -> None:
    """Remove `_name_or_path` (the run folder on the machine that shipped) from the configs under `folder`."""
    for path in folder.rglob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.pop("_name_or_path", None) is not None:
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def ship_judge(run: Path) -> dict:
    torch.manual_seed(0)
    judge = SceneJudge.from_pretrained(latest(run) / "pipeline").eval()
    images, _, labels = scenes.sample(2000, seed=20_000, split="test")
    seen, _ = judge.read(images)
    metrics = {"real_test_scenes": 2000, "scores_on_real": score_scenes(labels, seen), "run": _history(run)}
    stats = reference_stats(judge)
    metrics["train_test_frechet"] = float(stats["train_test_frechet"])

    def fill(tmp: Path) -> None:
        judge.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in stats.items()}, tmp / "reference.safetensors")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        _drop_source_paths(tmp)

    atomic.write(weights_path("judge-mini-sd"), fill)
    return metrics


CARD = """# unetlab `mini-sd`

A plain diffusers `StableDiffusionPipeline` with Stable Diffusion 1.5's UNet topology, trained by unetlab on
procedural scenes (`unetlab.data.scenes`). Load with `unetlab.load("mini-sd")` or, without unetlab,
`StableDiffusionPipeline.from_pretrained(folder)` (weights stored in float16; load with `torch_dtype=torch.float32`
on a CPU).

- **Data**: 64x64 RGB scenes, 1-3 objects (8 shapes, 8 colours, 2 sizes) on a 3x3 grid over a textured
  background (4 textures, 8 colours), jittered in position, size and rotation; captions from a grammar ("a big red
  star left of a small blue ring on a green striped background"). A tenth of the (shape, colour, background
  colour) triples never appears in training; every test-split scene has at least one of them.
- **Autoencoder**: `AutoencoderKL` 64x64x3 -> 16x16x4 (f = 4), block_out_channels (32, 64, 64), MSE + 1e-6 KL;
  scaling_factor {scaling_factor:.5f} (1 / std of the latents). Test-split reconstruction {vae_psnr:.2f} dB PSNR.
- **Text encoder**: `CLIPTextModel`, 4 layers, width 128, 32 positions; `CLIPTokenizer` whose vocab.json /
  merges.txt are built from the caption grammar (one token per word). Trained jointly with the UNet.
- **UNet**: `UNet2DConditionModel` with SD-1.5's blocks (CrossAttnDownBlock2D x3 + DownBlock2D,
  UNetMidBlock2DCrossAttn, UpBlock2D + CrossAttnUpBlock2D x3, 2 layers per block, 8 heads), 4 latent channels,
  sample_size 16, block_out_channels {channels}; {unet_params:.2f} M parameters. SD-1.5's noise schedule and DDIM
  scheduler config; epsilon prediction; captions dropped to "" with probability 0.1 (classifier-free guidance).
- **Training**: unetlab's Accelerate loop on a 2-core CPU (no GPU); the runs' final states:

```json
{runs}
```

## Commands

```bash
{commands}
```

## Quality

{quality}
"""


def _runs(run: Path, vae_run: Path | None) -> dict:
    """The histories for the card: the autoencoder's and the text-to-image run's; a run continued from the shipped
    weights (no `vae_run`) appends its history to the shipped card's runs."""
    if vae_run is not None:
        return {"autoencoder": _history(vae_run), "text-to-image": _history(run)}
    card = (weights_path("mini-sd") / "README.md").read_text()
    shipped = json.loads(card.split("```json\n", 1)[1].split("\n```", 1)[0])
    n = sum(k.startswith("text-to-image") for k in shipped)
    return {**shipped, f"text-to-image, continued ({n + 1})": _history(run)}


def ship_model(run: Path, vae_run: Path | None, quality: list[Path], commands: list[str]) -> Path:
    return atomic.write(weights_path("mini-sd"), lambda tmp: _fill_model(tmp, run, vae_run, quality, commands))


def _fill_model(tmp: Path, run: Path, vae_run: Path | None, quality: list[Path], commands: list[str]) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(latest(run) / "pipeline")
    pipe.to(torch.float16).save_pretrained(tmp)
    write_bpe_files(pipe.tokenizer, tmp / "tokenizer")
    pipe = StableDiffusionPipeline.from_pretrained(tmp, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    captions = scenes.sample(32, seed=0, split="test")[1]
    images = pipe(captions, num_inference_steps=50, generator=torch.Generator().manual_seed(0), output_type="pt").images
    save_grid(images, tmp / "samples.png", nrow=8)
    runs = _runs(run, vae_run)
    tables = []
    for path in quality:
        q = json.loads(path.read_text())
        rows = [f"| {k} | {v['mean']:.4f} ± {v['se']:.4f} |" for k, v in q["scores"].items()]
        tables.append(
            f"`{path.name}`: {q['steps']} steps of {q['scheduler']}, guidance {q['guidance_scale']}, "
            f"{q['num_captions']} test captions x {q['seeds']} seeds (mean ± s.e. over seeds); real "
            f"train-vs-test Fréchet distance {q['train_test_frechet']:.3f}; the judge on the real scenes: "
            f"all correct {q['real']['all_correct']:.4f}\n\n| score | value |\n| --- | --- |\n" + "\n".join(rows)
        )
    unet = pipe.unet
    card = CARD.format(
        scaling_factor=pipe.vae.config.scaling_factor,
        vae_psnr=runs["autoencoder"]["history"]["test_psnr"],
        channels=tuple(unet.config.block_out_channels),
        unet_params=sum(p.numel() for p in unet.parameters()) / 1e6,
        runs=json.dumps(runs, indent=2),
        commands="\n".join(commands),
        quality="\n\n".join(tables) or "(not measured)",
    )
    (tmp / "README.md").write_text(card)
    _drop_source_paths(tmp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("judge", "model"))
    p.add_argument("run", type=Path)
    p.add_argument(
        "--vae-run",
        type=Path,
        help="model: the autoencoder's run (none: a run continued from the shipped weights)",
    )
    p.add_argument("--quality", type=Path, nargs="*", default=[], help="model: JSON files of `unetlab eval quality`")
    p.add_argument("--command", action="append", default=[], help="model: a command of the runs, for the card")
    args = p.parse_args()
    if args.what == "judge":
        print(json.dumps(ship_judge(args.run)["scores_on_real"], indent=2))
    else:
        print(ship_model(args.run, args.vae_run, args.quality, args.command))


if __name__ == "__main__":
    main()
