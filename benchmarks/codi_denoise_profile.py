"""How well CoDi students denoise held-out digits noised to each timestep, next to the unconditional teacher: the
x_hat of one forward pass on z_t = alpha_t x0 + sigma_t eps (true noise, not a sampler's z), as PSNR to x0 and as
the standard deviation of x_hat on the background (pixels whose 3x3 neighbourhood is black in x0; inpaint: inside
the box). A conditional student should be at least as good as the teacher at every t; noise left in at low t is what
a 4-step sample (last step at t = 225) shows as speckle.

    nice -n 10 .venv/bin/python benchmarks/codi_denoise_profile.py digits-sr4-codi --task sr4

Prints one JSON line per model (the teacher first).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

TIMESTEPS = (45, 90, 135, 180, 225, 315, 450, 675, 900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped CoDi names or CoDiPipeline folders (one task)")
    parser.add_argument("--task", choices=("sr4", "inpaint"), default="sr4")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import unetlab
    from unetlab.codi import adapted_unet, heldout_conditions
    from unetlab.codi.consistency import alpha_sigma, predicted_x0
    from unetlab.data import DigitsDataset

    images = DigitsDataset("test", 16).images
    condition = heldout_conditions(args.task, images, seed=0)
    x0 = images * 2 - 1
    background = F.avg_pool2d(images, 3, 1, 1) < 0.02
    if args.task == "inpaint":
        background &= condition[:, -1:] > 0.5
    teacher = unetlab.load("digits")
    models = {"digits (teacher, unconditional)": None, **{name: unetlab.load(name) for name in args.models}}
    for name, pipe in models.items():
        psnr, spread = [], []
        for timestep in TIMESTEPS:
            t = torch.full((len(x0),), timestep, dtype=torch.long)
            alpha, sigma = alpha_sigma(teacher.scheduler.alphas_cumprod, t, x0)
            z = alpha * x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed))
            with torch.no_grad():
                if pipe is None:
                    out = teacher.unet(z, t).sample
                else:
                    out = adapted_unet(pipe.unet, pipe.adapter, z, t, condition)
            x_hat = (predicted_x0(out, z, alpha, sigma, "epsilon") / 2 + 0.5).clamp(0, 1)
            mse = (x_hat - images).pow(2).flatten(1).mean(1)
            psnr.append(round(float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()), 2))
            spread.append(round(float(x_hat[background].std()), 4))
        print(json.dumps({"model": name, "timesteps": TIMESTEPS, "psnr": psnr, "background_std": spread}))


if __name__ == "__main__":
    main()
