"""unetlab.video: frames in and out, edit_video on the shipped shapes model, SDEdit in ShapesPipeline, the
synthetic clips' known motion, and `unetlab edit-video`."""

import pytest
import torch

import unetlab
from unetlab.cli import main
from unetlab.data.videos import MOTIONS, synthetic_clip
from unetlab.metrics import compensated_error, flicker, frame_change
from unetlab.video import edit_video, read_frames, to_images, write_frames

KW = dict(strength=0.5, num_inference_steps=6, guidance_scale=5.0)


@pytest.fixture(scope="module")
def shapes():
    return unetlab.load("shapes")


def _blocks(n=3, size=12):
    """Frames of a few flat colours (exact through PNG and a GIF palette)."""
    frames = torch.zeros(n, 3, size, size)
    for t in range(n):
        frames[t, t % 3, :, : 4 + 2 * t] = 1.0
        frames[t, :, size // 2 :] = 0.2
    return (frames * 255).round() / 255


def test_frames_round_trip_through_folder_and_gif(tmp_path):
    frames = _blocks()
    out = write_frames(frames, tmp_path / "clip", scale=2)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png", "frame_0002.png", "video.gif"]
    up = frames.repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(read_frames(out), up) and torch.equal(read_frames(out / "video.gif"), up)
    assert torch.equal(read_frames(to_images(frames)), frames)
    with pytest.raises(FileExistsError, match="out: .* already exists"):
        write_frames(frames, out)
    with pytest.raises(ValueError, match="scale"):
        write_frames(frames, tmp_path / "bad", scale=0)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))


def test_bad_videos_are_one_line_errors(tmp_path, shapes):
    (tmp_path / "empty").mkdir()
    cases = [
        (
            lambda: read_frames([torch.zeros(3, 24, 24), torch.zeros(3, 20, 24)]),
            "frames: frame 1 is 24x20 but frame 0 is 24x24",
        ),
        (lambda: read_frames(torch.zeros(0, 3, 24, 24)), "frames: the video is empty"),
        (lambda: read_frames([]), "frames: the video is empty"),
        (lambda: read_frames(tmp_path / "empty"), "input: the folder .* holds no image"),
        (lambda: read_frames(torch.full((1, 3, 4, 4), 2.0)), r"frames: expected float values in \[0, 1\]"),
        (
            lambda: edit_video(
                shapes, torch.zeros(4, 3, 24, 24), "a red circle at the top on a blue background", anchors=[0, 4], **KW
            ),
            r"anchors: index 4 is out of range .* \(valid: 0 to 3\)",
        ),
        (lambda: edit_video(shapes, torch.zeros(2, 3, 24, 24), ["a"] * 3), "prompt: 3 prompts for 2 frames"),
        (lambda: edit_video(shapes, torch.zeros(2, 3, 24, 24), "a", batch_size=0), "batch_size: expected"),
        (
            lambda: shapes(
                "a red circle at the top on a blue background", image=torch.zeros(1, 3, 24, 24), strength=1.5
            ),
            r"strength: expected a number in \(0, 1\]",
        ),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            run()
        assert "\n" not in str(err.value)
    assert "_unetlab_patches" not in shapes.unet.__dict__  # the failed edit removed its handle


def test_edit_video_one_frame_with_anchors_is_the_plain_pipeline_and_runs_the_tail(shapes):
    clip = synthetic_clip(0, num_frames=3)
    calls = []
    hook = shapes.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    plain = shapes(
        clip.edited_captions[:1],
        image=clip.frames[:1],
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
        **KW,
    ).images
    assert len(calls) == 3  # int(6 * 0.5) SDEdit steps
    hook.remove()
    one = edit_video(shapes, clip.frames[:1], clip.edited_captions[:1], anchors=[0], **KW)
    assert torch.equal(one, plain)
    both = edit_video(shapes, clip.frames, clip.edited_captions, count=2, batch_size=1, **KW)
    indep = edit_video(shapes, clip.frames, clip.edited_captions, batch_size=1, **KW)
    assert torch.equal(
        both[[0, 2]], edit_video(shapes, clip.frames[[0, 2]], clip.edited_captions[::2], anchors=[0, 1], **KW)
    )
    assert (both[1] - indep[1]).abs().max() > 0  # the middle frame attended to the anchors
    assert both.shape == (3, 3, 24, 24) and 0 <= both.min() and both.max() <= 1


def test_synthetic_clips_have_the_motion_they_declare():
    for i, motion in enumerate(MOTIONS):
        clip = synthetic_clip(i, num_frames=8)
        assert clip.motion == motion and clip.frames.shape == (8, 3, 24, 24)
        assert torch.equal(clip.frames, synthetic_clip(i, num_frames=8).frames)
        edited_attr = {"colour": clip.edited_captions[0].split()[1], "shape": clip.edited_captions[0].split()[2]}
        assert edited_attr[clip.edit[0]] == clip.edit[1]
        if motion != "recolour":  # undoing the known motion leaves less than the raw change (resampling remains)
            bound = 0.5 if motion == "move" else 1.0
            assert compensated_error(clip.frames, clip.centres, clip.radii) < bound * frame_change(clip.frames)
    assert flicker(clip.frames, clip.frames) == 1.0
    move = synthetic_clip(0, num_frames=16)
    assert move.captions[0].split(" at the ")[1] != move.captions[-1].split(" at the ")[1]  # it changes cell


def test_cli_edit_video_writes_frames_and_gif_and_fails_cleanly(tmp_path, capsys):
    clip = synthetic_clip(1, num_frames=3)
    write_frames(clip.frames, tmp_path / "in")
    out = tmp_path / "out"
    args = [
        "edit-video",
        "--input",
        str(tmp_path / "in" / "video.gif"),
        "--prompt",
        clip.edited_captions[0],
        "--count",
        "2",
        "--steps",
        "4",
        "--strength",
        "0.5",
    ]
    assert main([*args, "--out", str(out)]) == 0
    assert len(read_frames(out)) == 3 and (out / "video.gif").is_file()
    assert main([*args, "--out", str(out)]) == 2
    assert "--out: " in capsys.readouterr().err
    assert (
        main(
            [
                "edit-video",
                "--input",
                str(tmp_path / "in"),
                "--prompt",
                "a",
                "--anchors",
                "0,7",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "failed"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("unetlab edit-video: error: anchors: index 7")
    assert not (tmp_path / "failed").exists()


def test_library_misuse_names_the_argument(tmp_path):
    from diffusers import DDIMPipeline, DDIMScheduler

    from unetlab.testing import tiny_unet

    (tmp_path / "not.gif").write_text("not an image")
    frames = _blocks()
    cases = [
        (lambda: write_frames(frames, tmp_path / "a", fps=0), r"fps: expected a frame rate from 0.0016 to 100"),
        (lambda: write_frames(frames, tmp_path / "a", fps=float("nan")), "fps: expected a frame rate"),
        (lambda: write_frames(frames, tmp_path / "a", scale=6000), "scale: 6000 makes 72000x72000 frames"),
        (lambda: read_frames(tmp_path / "not.gif"), "input: .*not.gif is not an image or GIF that PIL can read"),
        (lambda: read_frames(torch.full((1, 3, 4, 4), float("nan"))), "frames: 48 values are NaN"),
        (
            lambda: edit_video(DDIMPipeline(tiny_unet("ddpm"), DDIMScheduler()), frames, "a", strength=0.5),
            "pipe: DDIMPipeline takes no image, prompt, strength; editing a video needs an image-editing pipeline",
        ),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            run()
        assert "\n" not in str(err.value)
    for pipe, message in [(tiny_unet("ddpm"), "pipe: UNet2DModel is a model"), (None, "pipe: NoneType is not a")]:
        with pytest.raises(TypeError, match=message):
            edit_video(pipe, frames, "a")
    assert list(tmp_path.iterdir()) == [tmp_path / "not.gif"]  # nothing written
