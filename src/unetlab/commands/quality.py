"""`unetlab eval classifier|quality`: train the evaluation classifiers; measure a shipped model's quality bars."""

from __future__ import annotations

import argparse
import json

from .args import nonnegative_float, nonnegative_int, positive_float, positive_int

KINDS = ("digits", "shapes", "mini-sd")


def register_classifier(sub) -> None:
    p = sub.add_parser("classifier", help="train an evaluation classifier (digits | shapes) in unetlab's loop")
    p.add_argument("name", choices=("digits", "shapes"))
    p.add_argument("--out", required=True, help="run folder; the final classifier is written to OUT/classifier")
    p.add_argument("--steps", type=positive_int, default=1500)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run_classifier)


def run_classifier(args: argparse.Namespace) -> int:
    import torch

    from ..train.classifier import fit_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    final, acc = fit_classifier(args.name, args.out, args.steps, args.batch_size, args.lr, args.seed, args.resume)
    print(f"{args.name} classifier in {final}; held-out accuracy {json.dumps(acc)}")
    return 0


def register_quality(sub) -> None:
    p = sub.add_parser(
        "quality", help="measure the quality bars of the digits, shapes or mini-sd model (or a saved one)"
    )
    p.add_argument("model", help="digits | shapes | mini-sd | path to a saved pipeline of one of these kinds")
    p.add_argument("--kind", choices=KINDS, default=None, help="kind of a model given by path")
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=None,
        help="default: 1000 digits, 500 shapes; mini-sd: 500 test-split captions (each sampled --seeds times)",
    )
    p.add_argument("--steps", type=positive_int, default=50, help="DDIM steps")
    p.add_argument("--guidance-scale", type=nonnegative_float, default=None, help="default: 5 shapes, 7.5 mini-sd")
    p.add_argument("--seeds", type=positive_int, default=3, help="mini-sd: noise seeds (scores: mean ± s.e. over them)")
    p.add_argument("--batch-size", type=positive_int, default=250)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--json", default=None, help="write the numbers to this JSON file")
    p.add_argument("--grid", default=None, help="write a PNG grid of the first 64 samples")
    p.set_defaults(func=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    import torch

    from ..bench.quality import measure_quality

    if args.threads:
        torch.set_num_threads(args.threads)
    kind = args.kind or args.model
    if kind not in KINDS:
        raise ValueError(f"--kind: give {', '.join(KINDS)} for the model at {args.model}")
    if kind == "mini-sd":
        from ..bench.quality import measure_model

        result = measure_model(
            args.model,
            num_captions=args.num_samples or 500,
            steps=args.steps,
            guidance_scale=7.5 if args.guidance_scale is None else args.guidance_scale,
            seeds=args.seeds,
            batch_size=min(args.batch_size, 100),
            json_path=args.json,
            grid_path=args.grid,
        )
        print(json.dumps(result, indent=2))
        return 0
    result = measure_quality(
        args.model,
        kind,
        num_samples=args.num_samples,
        steps=args.steps,
        guidance_scale=5.0 if args.guidance_scale is None else args.guidance_scale,
        batch_size=args.batch_size,
        seed=args.seed,
        json_path=args.json,
        grid_path=args.grid,
    )
    print(json.dumps(result, indent=2))
    return 0
