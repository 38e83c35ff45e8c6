"""Copying against forecasting (`reuse="taylor1"`/`"taylor2"`) through `unetlab bench`, with DeepCache and the
fewer-steps rows, on a shipped model (quality and speed) or the SD-1.5-shaped UNet (speed only).

Usage: python benchmarks/forecast.py --model shapes --out DIR [--num-images 32]
       python benchmarks/forecast.py --model sd15 --out DIR     (random weights, 32x32 latent, DDIM-20)
"""

import argparse

import torch

from unetlab.bench import bench
from unetlab.bench.workload import sd15_workload

PAIRS = {  # copying row -> its forecast rows (names of `unetlab.bench.rows.specs`)
    "branch cache N=3 layer": ("taylor1", "taylor2"),
    "branch cache N=5 layer": ("taylor1", "taylor2"),
    "branch cache N=2 B=0": ("taylor1",),
    "branch cache layer every 2 to 12 then 6": ("taylor1",),
    "branch cache layer every 2 to 12 then 8": ("taylor1",),
    "clockwork clock=2": ("taylor1", "taylor2"),
    "clockwork clock=4": ("taylor1",),
    "EP paper keys, parallel": ("taylor1", "taylor2"),
    "EP uniform:2": ("taylor1",),
    "EP uniform:4": ("taylor1", "taylor2"),
}
SD15 = ("branch cache N=3 layer", "clockwork clock=2", "EP uniform:4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["digits", "shapes", "sd15"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-images", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "sd15":
        methods = [m for base in SD15 for m in (base, f"{base} taylor1")] + ["branch cache N=3 layer taylor2"]
        result = bench(
            workload=sd15_workload(sample_size=32),
            steps=20,
            num_images=1,
            timing_images=1,
            repeats=3,
            methods=methods,
            out=args.out,
        )
    else:
        methods = [m for base, modes in PAIRS.items() for m in (base, *(f"{base} {r}" for r in modes))]
        result = bench(
            model=args.model,
            num_images=args.num_images,
            timing_images=4,
            repeats=3,
            methods=methods + ["DeepCache pkg N=3 B=0"],
            out=args.out,
        )
    for r in result["rows"]:
        print(
            f"{r['method']:48s} wall {r['speedup_wall']:.2f}x ({r['speedup_wall_min']:.2f}-{r['speedup_wall_max']:.2f})"
            f"  FLOPs {r['speedup_flops']:.2f}x  PSNR {r['psnr'] if r['psnr'] is None else round(r['psnr'], 2)}"
        )


if __name__ == "__main__":
    main()
