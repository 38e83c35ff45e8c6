"""The ceiling `mini-sd`'s autoencoder puts on its judged quality: the judge on real test-split scenes and on their
reconstructions D(E(x)) (the posterior mean decoded), with the reconstructions' PSNR. A sample the UNet generates
is decoded by the same decoder, so the judge cannot read it better than it reads the reconstructions.

    python benchmarks/mini_sd_vae_ceiling.py [--vae FOLDER ...] [--num-scenes 300] [--grid out.png]
"""

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from unetlab.data import scenes
from unetlab.eval.mini_sd import judge_images, load_judge
from unetlab.metrics import mean_psnr
from unetlab.models.registry import weights_path

SHOWN = ("all_correct", "all_correct_1obj", "all_correct_2obj", "all_correct_3obj", "shape", "colour", "size")


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    return ((vae.decode(vae.encode(images * 2 - 1).latent_dist.mean).sample + 1) / 2).clamp(0, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", action="append", help="AutoencoderKL folders (default: the shipped mini-sd's)")
    p.add_argument("--num-scenes", type=int, default=300)
    p.add_argument("--grid", type=Path, help="write real scenes over each VAE's reconstructions (8 columns)")
    args = p.parse_args()
    if args.num_scenes < 2:
        raise SystemExit("--num-scenes: expected at least 2")
    folders = args.vae or [str(weights_path("mini-sd") / "vae")]
    for folder in folders:
        if not (Path(folder) / "config.json").is_file():
            raise SystemExit(f"--vae: {folder} holds no AutoencoderKL (no config.json)")
    judge, reference = load_judge()
    images, _, labels = scenes.sample(args.num_scenes, seed=123, split="test")
    rows = [("real test scenes", None, judge_images(judge, reference, images, labels))]
    recs = []
    for folder in folders:
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()
        rec = reconstruct(vae, images)
        recs.append(rec)
        rows.append((f"reconstructed by {folder}", mean_psnr(rec, images), judge_images(judge, reference, rec, labels)))
    print(f"{args.num_scenes} test-split scenes (seed 123); the judge's rates, and PSNR of the reconstructions\n")
    print("| images | PSNR | " + " | ".join(SHOWN) + " |")
    print("|---|---:|" + "---:|" * len(SHOWN))
    for name, psnr, s in rows:
        cells = " | ".join(f"{s[k]:.3f}" for k in SHOWN)
        print(f"| {name} | {'–' if psnr is None else f'{psnr:.2f} dB'} | {cells} |")
    if args.grid is not None:
        save_grid([images[:8], *(r[:8] for r in recs)], args.grid)


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Each row of images side by side, rows stacked, upscaled 3x (nearest)."""
    import numpy as np
    from PIL import Image

    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    image = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST).save(path)
    print(f"grid: {path}")


if __name__ == "__main__":
    main()
