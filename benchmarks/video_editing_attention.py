"""Why anchor attention changes mini-sd's video edits so little: per-frame editing vs first-frame attention vs
anchors-3 vs the same edit with every self-attention (`attn1`) output zeroed (how much self-attention matters at
all), on `benchmarks/video_editing.py --model mini-sd`'s clips and settings, shared noise.

Per method, averaged over clips: frame accuracy (the judge reads the edit); mean absolute difference from
per-frame editing over the whole frame and inside the object's region (input pixels that differ from the plain
background's colour, dilated by 2 px); the motion-compensated error inside the object's region
(|E_t - warp(E_{t+1})| with the known motion) and the change of the background (|E_t - E_{t+1}| outside the
object's regions in both frames: it does not move), which the whole-frame compensated error mixes.

    nice -n 10 .venv/bin/python benchmarks/video_editing_attention.py --clips 6 --steps 10 \
        --json docs/video_edit_mini_sd_attention.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from video_editing import GUIDANCE, MODELS  # benchmarks/video_editing.py, beside this script

from unetlab.atomic import write_json
from unetlab.data import scenes
from unetlab.metrics import warp_next
from unetlab.video import edit_video

METHODS = {"per-frame": {}, "first-frame": {"anchors": [0]}, "anchors-3": {"count": 3}, "self-attention zeroed": {}}


def _object_region(clip) -> torch.Tensor:
    """(T, 1, S, S) mask of the pixels within 2 px of where the input differs from its background colour."""
    bg = torch.tensor([scenes.COLOURS[lab["background"]["colour"]] for lab in clip.labels]).view(-1, 3, 1, 1)
    inside = ((clip.frames - bg).abs().amax(1, keepdim=True) > 0.05).float()
    return F.max_pool2d(inside, 5, stride=1, padding=2) > 0


def _zero_self_attention(unet) -> list:
    """Hooks that replace every self-attention output by zeros (remove them to undo)."""
    return [
        m.register_forward_hook(lambda _m, _a, out: torch.zeros_like(out))
        for name, m in unet.named_modules()
        if name.endswith("attn1")
    ]


def _consistency(frames: torch.Tensor, clip, region: torch.Tensor) -> dict[str, float]:
    """Compensated error inside the object's region, and the background's frame-to-frame change."""
    err = (frames[:-1] - warp_next(frames, clip.centres, clip.radii, clip.angles)).abs().mean(1, keepdim=True)
    still = ~(region[:-1] | region[1:])
    change = (frames[:-1] - frames[1:]).abs().mean(1, keepdim=True)
    return {
        "object_compensated_error": err[region[:-1]].mean().item(),
        "background_change": change[still].mean().item(),
    }


def run(args) -> dict:
    pipe, clips, success = MODELS["mini-sd"](args)
    kw = {
        "strength": args.strength,
        "num_inference_steps": args.steps,
        "guidance_scale": GUIDANCE["mini-sd"] if args.guidance is None else args.guidance,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    per = {m: [] for m in ("input", *METHODS)}
    for clip in clips:
        region = _object_region(clip)
        per["input"].append(_consistency(clip.frames, clip, region))
        outputs = {}
        for name, method in METHODS.items():
            hooks = _zero_self_attention(pipe.unet) if name == "self-attention zeroed" else []
            try:
                outputs[name] = edit_video(pipe, clip.frames, clip.edited_captions, **method, **kw)
            finally:
                for h in hooks:
                    h.remove()
        for name, out in outputs.items():
            diff = (out - outputs["per-frame"]).abs()
            per[name].append(
                {
                    "frame_accuracy": success(out, clip).float().mean().item(),
                    "difference_from_per_frame": diff.mean().item(),
                    "difference_in_object_region": diff[region.expand_as(diff)].mean().item(),
                    **_consistency(out, clip, region),
                }
            )
    return {
        "command": "benchmarks/video_editing_attention.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "clips": [{"motion": c.motion, "edit": list(c.edit)} for c in clips],
        "rows": {name: {k: statistics.mean(r[k] for r in rows) for k in rows[0]} for name, rows in per.items()},
        "per_clip": per,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--strength", type=float, default=0.6)
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: mini-sd's 7.5)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args)
    if args.json:
        write_json(args.json, result, indent=1)
    print(json.dumps(result["rows"], indent=1))


if __name__ == "__main__":
    main()
