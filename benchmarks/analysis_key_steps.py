"""Derived vs uniform key steps of the same count for encoder propagation on the shipped digits model.

Prints the PSNR / SSIM of each schedule's outputs against the plain pipeline (same seeds), for 4, 6 and 8 keys.
Usage: python benchmarks/analysis_key_steps.py --out DIR   (DIR holds trace.json from `unetlab analyze trace`)
"""

import argparse

import torch

import unetlab
from unetlab.analysis import Sampler, TraceResult, derive_key_steps
from unetlab.metrics import image_metrics, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder with trace.json of `unetlab analyze trace --model digits`")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = unetlab.load("digits")
    sampler = Sampler(pipe, None, args.steps)
    items = sampler.items(range(args.seeds))
    plain = sampler.run(items)
    trace = TraceResult.load(f"{args.out}/trace.json")
    for k in (4, 6, 8):
        derived = list(derive_key_steps(trace, num_keys=k).key_steps)
        uniform = [round(i * args.steps / k) for i in range(k)]
        for name, keys in (("derived", derived), ("uniform", uniform)):
            with unetlab.encoder_propagation(pipe, key_steps=keys, noise_injection=None):
                m = summarize(image_metrics(sampler.run(items), plain))
            print(f"k={k} {name:8s} keys={keys} PSNR={m['psnr']:.2f} dB SSIM={m['ssim']:.4f}", flush=True)


if __name__ == "__main__":
    main()
