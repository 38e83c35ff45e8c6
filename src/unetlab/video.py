"""Videos as frames (T, 3, H, W) in [0, 1]: read from a folder of images, an animated GIF or a tensor; written as
PNG frames plus a GIF; and `edit_video`, which edits every frame with an image-editing pipeline, either
independently or with anchor attention (Fairy, Wu et al. 2024: anchors first, then the other frames in batches).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image, ImageSequence, UnidentifiedImageError

from .accel.anchor_attention import anchor_attention
from .atomic import write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FPS_RANGE = (0.0016, 100.0)  # a GIF frame lasts 1 to 65535 hundredths of a second
GIF_SIDE = 65535  # the largest GIF width and height


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1) for im in images]
    )


def check_frames(frames, name: str = "frames") -> torch.Tensor:
    """`frames` as a float tensor (T, 3, H, W) in [0, 1]; one-line errors for an empty video or mixed sizes."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError(f"{name}: the video is empty (0 frames); give at least one frame")
        sizes = [tuple(f.shape[-2:]) if isinstance(f, torch.Tensor) else f.size[::-1] for f in frames]
        for i, s in enumerate(sizes):
            if s != sizes[0]:
                raise ValueError(
                    f"{name}: frame {i} is {s[1]}x{s[0]} but frame 0 is {sizes[0][1]}x{sizes[0][0]}; "
                    "all frames must have one size"
                )
        frames = torch.stack(list(frames)) if isinstance(frames[0], torch.Tensor) else _to_tensor(list(frames))
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(
            f"{name}: expected a tensor (T, 3, H, W) in [0, 1], a list of frames, a folder or a GIF, got {shape}"
        )
    if len(frames) == 0:
        raise ValueError(f"{name}: the video is empty (0 frames); give at least one frame")
    if not frames.is_floating_point() or frames.min() < 0 or frames.max() > 1:
        raise ValueError(f"{name}: expected float values in [0, 1]")
    if not frames.isfinite().all():
        raise ValueError(f"{name}: {int((~frames.isfinite()).sum())} values are NaN; expected float values in [0, 1]")
    return frames


def _read(path: Path) -> list[Image.Image]:
    """The frames of image or GIF file `path` in RGB; a one-line error naming it when PIL cannot read it."""
    try:
        with Image.open(path) as im:
            return [f.convert("RGB") for f in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"input: {path} is not an image or GIF that PIL can read ({err})") from None


def read_frames(source) -> torch.Tensor:
    """Frames (T, 3, H, W) in [0, 1] of a tensor, a list of tensors or PIL images, an image folder (sorted by
    name) or an animated GIF."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(
                    f"input: the folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)}); the video is empty"
                )
            return check_frames([_read(p)[0] for p in files], "input")
        if path.is_file():
            return check_frames(_read(path), "input")
        raise FileNotFoundError(f"input: {path} is neither a folder of images nor an image/GIF file")
    return check_frames(source)


def to_images(frames: torch.Tensor) -> list[Image.Image]:
    """PIL images of frames (T, 3, H, W) in [0, 1]."""
    arr = (check_frames(frames).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def check_gif(fps: float, scale: int, height: int, width: int) -> None:
    """One-line errors unless a GIF of `height` x `width` frames at `fps`, enlarged `scale` times, can be written."""
    low, high = FPS_RANGE
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not low <= fps <= high:
        raise ValueError(
            f"fps: expected a frame rate from {low} to {high:g} (a GIF frame lasts 1/100 s to 655 s), got {fps!r}"
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale: expected an int >= 1, got {scale!r}")
    if max(height, width) * scale > GIF_SIDE:
        raise ValueError(
            f"scale: {scale} makes {width * scale}x{height * scale} frames; a GIF is at most {GIF_SIDE} pixels a side "
            f"(expected 1 to {GIF_SIDE // max(height, width)})"
        )


def write_frames(frames: torch.Tensor, out: str | Path, fps: float = 8.0, scale: int = 1) -> Path:
    """Write frame_0000.png ... and video.gif (each frame `scale` x larger, nearest) into the new folder `out`,
    atomically: the folder appears complete or not at all; an existing non-empty `out` is an error."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"out: {out} already exists and is not an empty folder")
    frames = check_frames(frames)
    check_gif(fps, scale, *frames.shape[-2:])
    images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in to_images(frames)]

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        for i, im in enumerate(images):
            im.save(tmp / f"frame_{i:04d}.png")
        images[0].save(tmp / "video.gif", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)

    return write(out, fill)


def check_editor(pipe, image_arg: str, arguments, name: str = "pipe") -> None:
    """A one-line error naming `name` unless `pipe` takes keyword `image_arg` and every one of `arguments` (a
    diffusers pipeline's `**kwargs` do not count: they only catch deprecated arguments, and would drop the frames)."""
    if isinstance(pipe, torch.nn.Module):
        raise TypeError(f"{name}: {type(pipe).__name__} is a model; give the image-editing pipeline around it")
    try:
        params = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError, AttributeError):
        raise TypeError(f"{name}: {type(pipe).__name__} is not a callable pipeline") from None
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if open_ended and not isinstance(pipe, DiffusionPipeline):
        return
    missing = [a for a in (image_arg, *arguments) if a not in params]
    if missing:
        raise ValueError(
            f"{name}: {type(pipe).__name__} takes no {', '.join(missing)}; editing a video needs an image-editing "
            f"pipeline called with {image_arg}=frames (SDEdit/img2img, e.g. shapes)"
        )


def _batches(indices: list[int], batch_size: int) -> list[list[int]]:
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def edit_video(
    pipe,
    frames,
    prompt: str | list[str] | None,
    anchors=None,
    stride: int | None = None,
    count: int | None = None,
    own_kv: bool = False,
    batch_size: int = 4,
    seed: int | None = 0,
    per_frame_noise: bool = False,
    image_arg: str = "image",
    frame_kwargs: dict[str, torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    **pipe_kwargs,
) -> torch.Tensor:
    """Edited frames (T, 3, H, W) in [0, 1]: `pipe(prompt=..., <image_arg>=frames, output_type="pt", **pipe_kwargs)`
    on batches of `batch_size` frames. With `anchors`, `stride` or `count`, the anchor frames are edited first (one
    call) and every other frame attends to their self-attention keys/values (`unetlab.anchor_attention`);
    with none of them every frame is edited independently. `prompt`: one for all frames, one per frame, or None (then
    give `prompt_embeds` per frame in `frame_kwargs`);
    `seed`: every frame's noise from the same seed, or frame i's from `seed + i` with `per_frame_noise` (None: the
    pipeline's own draw); `frame_kwargs`: other
    per-frame tensors (T, ...) sliced like the frames (e.g. ControlNet's `control_image`); `progress(n)` is
    called with the number of frames just finished."""
    frames = check_frames(frames)
    n = len(frames)
    prompts = [prompt] * n if isinstance(prompt, str) or prompt is None else list(prompt)
    if len(prompts) != n:
        raise ValueError(f"prompt: {len(prompts)} prompts for {n} frames; give one prompt or one per frame")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    extra = dict(frame_kwargs or {})
    for key, value in extra.items():
        if len(value) != n:
            raise ValueError(f"frame_kwargs: {key} has {len(value)} entries for {n} frames")
    given = [*(["prompt"] if prompt is not None else []), *pipe_kwargs, *extra, "output_type"]
    check_editor(pipe, image_arg, given + (["generator"] if seed is not None else []))
    device = getattr(pipe, "_execution_device", frames.device)

    def run(idx: list[int]) -> torch.Tensor:
        kwargs = {**pipe_kwargs, **{k: v[idx] for k, v in extra.items()}}
        if seed is not None:
            kwargs["generator"] = [torch.Generator(device).manual_seed(seed + i * per_frame_noise) for i in idx]
        if prompt is not None:
            kwargs["prompt"] = [prompts[i] for i in idx]
        out = pipe(**{image_arg: frames[idx]}, output_type="pt", **kwargs).images
        if progress is not None:
            progress(len(idx))
        return out.to("cpu", torch.promote_types(out.dtype, torch.float32))

    edited: list[torch.Tensor | None] = [None] * n
    use_anchors = anchors is not None or stride is not None or count is not None
    if not use_anchors:
        for idx in _batches(list(range(n)), batch_size):
            for i, e in zip(idx, run(idx)):
                edited[i] = e
        return torch.stack(edited)
    with anchor_attention(pipe, anchors=anchors, stride=stride, count=count, own_kv=own_kv) as handle:
        anchor_idx = list(handle.anchors(n))
        with handle.phase_of("anchors", len(anchor_idx)):
            for i, e in zip(anchor_idx, run(anchor_idx)):
                edited[i] = e
        rest = sorted(set(range(n)) - set(anchor_idx))
        for idx in _batches(rest, batch_size):
            with handle.phase_of("frames", len(idx)):
                for i, e in zip(idx, run(idx)):
                    edited[i] = e
    return torch.stack(edited)
