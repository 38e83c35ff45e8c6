"""Key-step sets for encoder propagation on mini-sd at equal FLOPs, judged: the paper's set, uniform and derived.

Rows: the plain DDIM-N sample (the fidelity reference), encoder propagation with Faster Diffusion's SD key set
("paper"), with as many uniform keys, with as many keys derived from a trace (`unetlab analyze trace --steps N`),
the paper's set with prior noise injection (Faster Diffusion Sec. 3.4), and plain DDIM at the UNet FLOPs of the
paper's set. Each row: UNet FLOPs per image, PSNR / SSIM against the plain sample from the same noise, and the
scene judge's rates and Fréchet distance, mean ± s.e. over noise seeds. Images are kept in --out, so a rerun
resumes; the summary goes to --json.
Usage: python benchmarks/mini_sd_key_steps.py --trace out/s50/trace.json --out out/keys --json keys.json
"""

import argparse
import json
from pathlib import Path

import torch

import unetlab
from unetlab.analysis import Sampler, TraceResult, derive_key_steps
from unetlab.atomic import write_json
from unetlab.bench.measure import unet_flops
from unetlab.data import scenes
from unetlab.eval.mini_sd import judge_images, load_judge, over_seeds
from unetlab.metrics import image_metrics, summarize
from unetlab.schedules import resolve

ROWS = ("plain", "paper", "uniform", "derived", "paper+ni", "fewer")
SCORES = ("texture", "size", "count", "relation", "background_colour", "colour", "shape", "position", "all_correct")


def plot(summary: dict, path: str) -> None:
    """Fidelity (PSNR) and the judge's rates (mean ± s.e. over seeds) per row, and the Fréchet distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = list(rows)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 3, 1]})
    labels = [f"{n}\n{rows[n]['flops_per_image'] / 1e9:.1f} GF" for n in names]
    a.bar(range(len(names)), [rows[n].get("psnr") or 0 for n in names], color="tab:blue")
    a.set_xticks(range(len(names)), labels, fontsize=7, rotation=30)
    a.set_ylabel("PSNR vs DDIM-50 (dB)")
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        j = rows[n]["judged"]
        b.bar(
            [k + i * width for k in range(len(SCORES))],
            [j[s]["mean"] for s in SCORES],
            width,
            yerr=[j[s]["se"] for s in SCORES],
            label=n,
        )
    b.set_xticks([k + 0.4 - width / 2 for k in range(len(SCORES))], SCORES, fontsize=8, rotation=20)
    b.set_ylabel("judge: rate right (mean ± s.e. over seeds)")
    b.legend(fontsize=7)
    fd = [rows[n]["judged"]["frechet"] for n in names]
    c.bar(range(len(names)), [f["mean"] for f in fd], yerr=[f["se"] for f in fd], color="tab:gray")
    c.set_ylim(0.9 * min(f["mean"] for f in fd), 1.05 * max(f["mean"] + f["se"] for f in fd))
    c.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
    c.set_ylabel("Fréchet distance (judge features)")
    fig.suptitle(
        f"mini-sd, encoder propagation key-step sets at DDIM-{summary['steps']}, "
        f"{summary['captions']} captions x {summary['seeds']} seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", required=True, help="trace.json of `unetlab analyze trace --model mini-sd`")
    parser.add_argument("--out", required=True, help="folder for the sampled images (resume)")
    parser.add_argument("--json", required=True, help="summary JSON")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--captions", type=int, default=32, help="test-split captions (the bench's first ones)")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per caption")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--noise-injection", type=float, default=0.003)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--plot", default=None, help="write a PNG of the summary in --json and exit")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(Path(args.json).read_text()), args.plot)
        return
    torch.set_num_threads(1)
    pipe = unetlab.load("mini-sd")
    captions = scenes.sample(args.captions, seed=0, split="test")[1]
    sampler = Sampler(pipe, captions, args.steps, 7.5)
    items = sampler.items(range(args.seeds))
    paper = list(resolve("paper", args.steps))
    k = len(paper)
    keys = {
        "paper": paper,
        "uniform": [round(i * args.steps / k) for i in range(k)],
        "derived": list(derive_key_steps(TraceResult.load(args.trace), num_keys=k).key_steps),
    }
    keys["paper+ni"] = paper
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    summary.update(
        steps=args.steps, captions=args.captions, seeds=args.seeds, guidance_scale=7.5, rows=summary.get("rows", {})
    )
    judge, reference = load_judge()
    labels = [scenes.parse_caption(c) for c, _ in items]

    def context(name):
        if name in keys:
            ni = args.noise_injection if name == "paper+ni" else None
            return unetlab.encoder_propagation(pipe, key_steps=keys[name], noise_injection=ni)
        return torch.no_grad()

    def images_of(name, run_sampler):
        path = out / f"{name}.pt"
        if path.is_file():
            return torch.load(path)
        with context(name):
            chunks = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
            images = torch.cat([run_sampler.run(c) for c in chunks])
        torch.save(images, path)
        return images

    plain = images_of("plain", sampler)
    for name in args.rows:
        run_sampler = sampler
        if name == "fewer":
            paper_flops = summary["rows"]["paper"]["flops_per_image"]
            plain_flops = summary["rows"]["plain"]["flops_per_image"]
            n = round(args.steps * paper_flops / plain_flops)
            run_sampler = Sampler(pipe, captions, n, 7.5)
        with context(name):
            _, flops = unet_flops(lambda s=run_sampler: s.run(items[:1]), pipe.unet)
        images = images_of(name, run_sampler)
        seeds = [[i for i, (_, s) in enumerate(items) if s == seed] for seed in range(args.seeds)]
        judged = over_seeds([judge_images(judge, reference, images[idx], [labels[i] for i in idx]) for idx in seeds])
        row = dict(
            key_steps=keys.get(name),
            steps=run_sampler.num_inference_steps,
            noise_injection=args.noise_injection if name == "paper+ni" else None,
            flops_per_image=flops,
            judged=judged,
        )
        if name != "plain":
            row.update(summarize(image_metrics(images, plain)))
        summary["rows"][name] = row
        write_json(args.json, summary, indent=1)
        fid = f" PSNR={row['psnr']:.2f} SSIM={row['ssim']:.4f}" if name != "plain" else ""
        print(f"{name}: steps={row['steps']} keys={row['key_steps']} GFLOPs={flops / 1e9:.3f}{fid}", flush=True)


if __name__ == "__main__":
    main()
