"""Video editing on synthetic clips: per-frame editing vs first-frame attention vs anchor attention.

Each clip (known motion) is edited with SDEdit to its edited captions, by every method, in an order that rotates
from clip to clip. `--model shapes`: clips from `unetlab.data.videos`, edited by the shipped `shapes` model
(`ShapesPipeline(image=..., strength=...)`), judged by the shipped shapes classifier. `--model mini-sd`: clips of
scenes from `unetlab.data.scene_clips` (one object moving, rotating or growing; edit: the object's colour or the
background's), edited by `StableDiffusionImg2ImgPipeline(**unetlab.load("mini-sd").components)`, judged by the
mini-sd judge (`score_scene` of the edited label, the edited attribute only).
Edit success: the judge reads the requested attribute on a frame (frame accuracy) and on all frames of a clip
(clip success). Consistency: mean |E_t - warp(E_{t+1})| after undoing the known motion, and flicker = the edit's
mean frame-to-frame change over the input's own; and how far each method's frames are from per-frame editing's
(mean absolute difference, same noise).
Time per frame: the median over clips; the ratio to per-frame editing is the median of the per-clip ratios
(both timed on the same clip, alternately); wall time, and CPU time (of the calling thread with `--threads 1`,
where it does all the work, else of the process), which other jobs on a shared CPU do not inflate.
Peak memory: resident-set growth during one clip's edit (median).
Two noise settings: every frame starts from the same noise ("shared"), or frame i from seed + i ("per-frame").

    nice -n 5 .venv/bin/python benchmarks/video_editing.py --clips 20 --json docs/video_edit.json \
        --figure docs/figures/video_edit.png
    nice -n 10 .venv/bin/python benchmarks/video_editing.py --model mini-sd --clips 6 --steps 10 \
        --json docs/video_edit_mini_sd.json --figure docs/figures/video_edit_mini_sd.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from diffusers import StableDiffusionImg2ImgPipeline
from tqdm import tqdm

import unetlab
from unetlab.bench.measure import peak_memory
from unetlab.data.scene_clips import scene_clips
from unetlab.data.shapes import ATTRIBUTES
from unetlab.data.videos import synthetic_clips
from unetlab.eval.classifier import load_classifier
from unetlab.eval.judge import score_scene
from unetlab.eval.mini_sd import load_judge
from unetlab.metrics import compensated_error, flicker
from unetlab.video import edit_video

METHODS = {
    "per-frame": {},
    "first-frame": {"anchors": [0]},
    "anchors-2": {"count": 2},
    "anchors-3": {"count": 3},
    "anchors-4": {"count": 4},
    "anchors-3 + own K/V": {"count": 3, "own_kv": True},
}
NOISE = {"shared": False, "per-frame": True}
GUIDANCE = {"shapes": 5.0, "mini-sd": 7.5}  # each model's default


def _shapes(args):
    """The shapes pipeline, its clips, and success(frames, clip): the classifier reads the edit on each frame."""
    clf = load_classifier("shapes")

    def success(frames: torch.Tensor, clip) -> torch.Tensor:
        with torch.no_grad():
            pred = clf(frames)[clip.edit[0]].argmax(1)
        return pred == ATTRIBUTES[clip.edit[0]].index(clip.edit[1])

    return unetlab.load("shapes"), synthetic_clips(args.clips, num_frames=args.frames, seed=args.seed), success


def _mini_sd(args):
    """mini-sd's img2img pipeline, scene clips, and success(frames, clip, labels): the judge reads the edited
    attribute of `labels` (default: the edited labels) on each frame."""
    pipe = StableDiffusionImg2ImgPipeline(**unetlab.load("mini-sd").components)
    pipe.set_progress_bar_config(disable=True)
    judge, _ = load_judge()

    def success(frames: torch.Tensor, clip, labels=None) -> torch.Tensor:
        seen, _ = judge.read(frames)
        stated = clip.edited_labels if labels is None else labels
        return torch.tensor([score_scene(lab, s)[clip.edit[0]] for lab, s in zip(stated, seen)])

    return pipe, scene_clips(args.clips, num_frames=args.frames, seed=args.seed), success


MODELS = {"shapes": _shapes, "mini-sd": _mini_sd}


def _motion(clip) -> tuple:
    """The clip's known motion as `compensated_error` takes it (scene clips also rotate)."""
    return (clip.centres, clip.radii) + ((clip.angles,) if hasattr(clip, "angles") else ())


def run(args) -> dict:
    pipe, clips, success = MODELS[args.model](args)
    guidance = GUIDANCE[args.model] if args.guidance is None else args.guidance
    clock = time.thread_time if args.threads == 1 else time.process_time
    rows, example = {}, {}
    bar = tqdm(total=len(clips) * len(METHODS) * len(NOISE), desc="edit clips", unit="clip")
    for noise, per_frame in NOISE.items():
        keys = ("acc", "clip", "comp", "flicker", "sec", "cpu", "mb", "diff")
        per = {m: {k: [] for k in keys} for m in METHODS}
        for ci, clip in enumerate(clips):
            names = list(METHODS)
            names = names[ci % len(names) :] + names[: ci % len(names)]
            outputs = {}
            for name in names:
                with peak_memory() as mem:
                    t0, c0 = time.perf_counter(), clock()
                    edited = edit_video(
                        pipe,
                        clip.frames,
                        clip.edited_captions,
                        batch_size=args.batch_size,
                        seed=args.seed,
                        per_frame_noise=per_frame,
                        strength=args.strength,
                        num_inference_steps=args.steps,
                        guidance_scale=guidance,
                        **METHODS[name],
                    )
                    sec, cpu = time.perf_counter() - t0, clock() - c0
                ok = success(edited, clip)
                r = per[name]
                r["acc"].append(ok.float().mean().item())
                r["clip"].append(float(ok.all()))
                r["comp"].append(compensated_error(edited, *_motion(clip)))
                r["flicker"].append(flicker(edited, clip.frames))
                r["sec"].append(sec)
                r["cpu"].append(cpu)
                r["mb"].append(mem["mb"])
                outputs[name] = edited
                if ci == args.figure_clip:
                    example[(noise, name)] = edited
                bar.update()
            for name in METHODS:
                per[name]["diff"].append((outputs[name] - outputs["per-frame"]).abs().mean().item())
        base, base_cpu = per["per-frame"]["sec"], per["per-frame"]["cpu"]
        rows[noise] = [
            {
                "method": name,
                "frame_accuracy": statistics.mean(r["acc"]),
                "clip_success": statistics.mean(r["clip"]),
                "compensated_error": statistics.mean(r["comp"]),
                "flicker": statistics.mean(r["flicker"]),
                "difference_from_per_frame": statistics.mean(r["diff"]),
                "seconds_per_frame": statistics.median(r["sec"]) / args.frames,
                "time_vs_per_frame": statistics.median(s / b for s, b in zip(r["sec"], base)),
                "cpu_seconds_per_frame": statistics.median(r["cpu"]) / args.frames,
                "cpu_time_vs_per_frame": statistics.median(s / b for s, b in zip(r["cpu"], base_cpu)),
                "peak_mb": statistics.median(r["mb"]) if None not in r["mb"] else None,
            }
            for name, r in per.items()
        ]
    bar.close()
    inputs = {"compensated_error": statistics.mean(compensated_error(c.frames, *_motion(c)) for c in clips)}
    if args.model == "mini-sd":  # how well the judge reads the unedited attribute on the input frames
        inputs["judge_frame_accuracy"] = statistics.mean(
            success(c.frames, c, c.labels).float().mean().item() for c in clips
        )
    result = {
        "command": "benchmarks/video_editing.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        "date": datetime.date.today().isoformat(),
        "model": args.model,
        "guidance": guidance,
        "clips": len(clips),
        "frames": args.frames,
        "motions": sorted({c.motion for c in clips}),
        "edits": [list(c.edit) for c in clips],
        "input": inputs,
        "rows": rows,
    }
    if args.figure:
        _figure(clips[args.figure_clip], example, args.figure)
    return result


def _figure(clip, example: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(range(0, len(clip.frames), 2))
    names = list(METHODS)
    n_rows = 1 + len(names) * len(NOISE)
    fig, axes = plt.subplots(n_rows, len(cols), figsize=(len(cols) * 0.8 + 1.8, n_rows * 0.85))
    rows = [("input", clip.frames)] + [(f"{m} ({n} noise)", example[(n, m)]) for n in NOISE for m in names]
    for r, (label, frames) in enumerate(rows):
        for c, t in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(frames[t].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
            if r == 0:
                ax.set_title(f"t={t}", fontsize=7)
    fig.suptitle(f"{clip.motion} clip, edit {clip.edit[0]} -> {clip.edit[1]}", fontsize=9)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def markdown(result: dict) -> str:
    lines = []
    for noise, rows in result["rows"].items():
        lines += [
            f"Noise: {noise}",
            "",
            (
                "| method | frame accuracy | clip success | motion-compensated error | flicker | "
                "mean abs. difference from per-frame | s/frame | time vs per-frame | CPU s/frame | "
                "CPU time vs per-frame | peak MB |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            mb = "–" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
            lines.append(
                f"| {r['method']} | {r['frame_accuracy']:.3f} | {r['clip_success']:.2f} | "
                f"{r['compensated_error']:.4f} | {r['flicker']:.3f} | {r['difference_from_per_frame']:.4f} | "
                f"{r['seconds_per_frame']:.3f} | {r['time_vs_per_frame']:.2f}x | "
                f"{r['cpu_seconds_per_frame']:.3f} | {r['cpu_time_vs_per_frame']:.2f}x | {mb} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="shapes")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps of the full schedule")
    p.add_argument("--strength", type=float, default=0.6, help="SDEdit strength (the last 60%% of the steps run)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: shapes 5.0, mini-sd 7.5)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure-clip", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--figure")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args)
    if args.json:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(args.json) or ".", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    print(f"{result['machine']}; {result['date']}; {result['clips']} clips of {result['frames']} frames")
    print(f"input's own motion-compensated error: {result['input']['compensated_error']:.4f}")
    if "judge_frame_accuracy" in result["input"]:
        print(f"the judge on the input frames (unedited attribute): {result['input']['judge_frame_accuracy']:.3f}")
    print(markdown(result))


if __name__ == "__main__":
    main()
