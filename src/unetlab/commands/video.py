"""`unetlab edit-video`: edit every frame of a video with an image-editing pipeline, optionally with anchor
attention; writes the edited frames and a GIF."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import nonnegative_float, nonnegative_int, positive_float, positive_int


def _indices(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated frame indices such as 0,8,15, got {text!r}"
        ) from None


def register(sub) -> None:
    p = sub.add_parser("edit-video", help="edit a video frame by frame (SDEdit / img2img), with anchor attention")
    p.add_argument(
        "--model",
        default="shapes",
        help="shapes (shipped), a saved image-editing pipeline folder or a hub id (default: shapes)",
    )
    p.add_argument("--input", required=True, help="a folder of frames (sorted by name) or an animated GIF")
    p.add_argument(
        "--prompt",
        required=True,
        action="append",
        help="the edit caption; repeat it once per frame for per-frame captions",
    )
    p.add_argument("--out", required=True, help="new folder for frame_0000.png ... and video.gif")
    anchors = p.add_mutually_exclusive_group()
    anchors.add_argument("--anchors", type=_indices, help="anchor frame indices, e.g. 0,8,15")
    anchors.add_argument("--stride", type=positive_int, help="every STRIDE-th frame is an anchor")
    anchors.add_argument("--count", type=positive_int, help="COUNT anchors spread uniformly (default 3)")
    anchors.add_argument("--independent", action="store_true", help="no anchor attention: edit frames independently")
    p.add_argument("--own-kv", action="store_true", help="other frames also attend to their own keys/values")
    p.add_argument("--batch-size", type=positive_int, default=4, help="frames per pipeline call (default 4)")
    p.add_argument("--steps", type=positive_int, default=20, help="inference steps of the full schedule (default 20)")
    p.add_argument("--strength", type=positive_float, default=0.6, help="SDEdit strength in (0, 1] (default 0.6)")
    p.add_argument("--guidance", type=nonnegative_float, default=5.0, help="guidance scale (default 5)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="noise seed, the same for every frame (default 0)")
    p.add_argument("--fps", type=positive_float, default=8.0, help="GIF frame rate (default 8)")
    p.add_argument("--scale", type=positive_int, default=1, help="enlarge the written frames (nearest) by this factor")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm.auto import tqdm

    from unetlab.accel.anchor_attention import AnchorAttentionConfig
    from unetlab.loading import load
    from unetlab.video import check_editor, check_gif, edit_video, read_frames, write_frames

    if args.strength > 1:
        raise ValueError(f"--strength: {args.strength} must be in (0, 1]")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out: {out} already exists and is not an empty folder")
    frames = read_frames(args.input)
    check_gif(args.fps, args.scale, *frames.shape[-2:])
    if args.count is not None and args.count > len(frames):
        raise ValueError(f"--count: {args.count} anchors for a {len(frames)}-frame video; expected 1 to {len(frames)}")
    if len(args.prompt) not in (1, len(frames)):
        raise ValueError(f"--prompt: {len(args.prompt)} prompts for {len(frames)} frames; give one or one per frame")
    prompt = args.prompt[0] if len(args.prompt) == 1 else args.prompt
    count = None if args.independent or args.anchors or args.stride else (3 if args.count is None else args.count)
    if not args.independent:  # check the anchors against the video before loading the model
        AnchorAttentionConfig(anchors=args.anchors, stride=args.stride, count=count).indices(len(frames))
    pipe = load(args.model)
    call = ("prompt", "strength", "num_inference_steps", "guidance_scale", "generator", "output_type")
    check_editor(pipe, "image", call, name=f"--model {args.model}")
    with tqdm(total=len(frames), desc="edit-video", unit="frame") as bar:
        edited = edit_video(
            pipe,
            frames,
            prompt,
            anchors=args.anchors,
            stride=args.stride,
            count=count,
            own_kv=args.own_kv,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=bar.update,
            strength=args.strength,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
        )
    write_frames(edited, out, fps=args.fps, scale=args.scale)
    print(f"wrote {len(edited)} frames and video.gif to {out}")
    return 0
