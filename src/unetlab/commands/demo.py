"""`unetlab demo`: the split forward on a small random SD-shaped UNet — anatomy, and a full step timed
against a decoder-only step on cached encoder tensors."""

from __future__ import annotations

import statistics
import time

from .args import positive_int


def register(sub) -> None:
    p = sub.add_parser("demo", help="time a full UNet step against a decoder-only step on a small random UNet")
    p.add_argument("--sample-size", type=positive_int, default=32, help="latent size (default 32)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats, median reported (default 5)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from unetlab.unet import anatomy, count_flops, decode, encode, example_inputs
    from unetlab.unet.configs import sd15_like

    if args.sample_size % 8:
        raise ValueError(
            f"--sample-size: {args.sample_size} does not fit the UNet's three downsamplings; "
            "expected a multiple of 8 (e.g. 32, 64)"
        )
    torch.manual_seed(0)
    unet = sd15_like(scale=10).eval()
    a = anatomy(unet, args.sample_size)
    print(a.table())
    x, cond = example_inputs(unet, 2, args.sample_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = encode(unet, x, 500, **cond)
        full_t, dec_t = [], []
        for _ in range(args.repeats):  # alternate the two so drift affects both equally
            t0 = time.perf_counter()
            unet(x, 500, **cond)
            full_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decode(unet, state, [480])
            dec_t.append(time.perf_counter() - t0)
    full_f, _ = count_flops(lambda: unet(x, 500, **cond))
    dec_f, _ = count_flops(lambda: decode(unet, state, [480]))
    full, dec = statistics.median(full_t), statistics.median(dec_t)
    print(f"\nbatch 2 at {args.sample_size}x{args.sample_size}, median of {args.repeats}:")
    print(f"  full UNet step      {1000 * full:8.1f} ms   {full_f / 1e9:7.3f} GFLOPs")
    print(f"  decoder-only step   {1000 * dec:8.1f} ms   {dec_f / 1e9:7.3f} GFLOPs")
    print(f"  ratio               {full / dec:8.2f}x wall   {full_f / dec_f:5.2f}x FLOPs")
    return 0
