"""`unetlab.data.scene_clips`: deterministic per seed, labels that say what is drawn, motion that is what it says."""

import pytest
import torch

from unetlab.data import scenes
from unetlab.data.scene_clips import EDITS, MOTIONS, TURN, scene_clip, scene_clips
from unetlab.metrics import compensated_error, warp_next

T = 8


def test_deterministic_per_seed():
    a, b, c = scene_clip(4, T, seed=2), scene_clip(4, T, seed=2), scene_clip(4, T, seed=3)
    assert torch.equal(a.frames, b.frames) and a.labels == b.labels and a.edited_captions == b.edited_captions
    assert torch.equal(a.angles, b.angles) and torch.equal(a.centres, b.centres)
    assert not torch.equal(a.frames, c.frames)
    assert torch.equal(scene_clips(5, T, seed=2)[4].frames, a.frames)


def test_shapes_labels_and_captions_agree():
    for i, clip in enumerate(scene_clips(2 * len(MOTIONS), T)):
        assert clip.motion == MOTIONS[i % 3] and clip.edit[0] == EDITS[i // 3 % 2]
        assert clip.frames.shape == (T, 3, 64, 64) and 0 <= clip.frames.min() and clip.frames.max() <= 1
        assert clip.centres.shape == (T, 2) and clip.radii.shape == (T,) and clip.angles.shape == (T,)
        assert clip.captions == [scenes.caption(lab) for lab in clip.labels]
        assert clip.edited_captions == [scenes.caption(lab) for lab in clip.edited_labels]
        for frame, lab, edited, (x, y) in zip(clip.frames, clip.labels, clip.edited_labels, clip.centres.tolist()):
            (obj,), bg = lab["objects"], lab["background"]
            assert obj["cell"] == 3 * int(y // (64 / 3)) + int(x // (64 / 3))
            assert torch.allclose(frame[:, 0, 0], torch.tensor(scenes.COLOURS[bg["colour"]]), atol=1e-6)
            if obj["shape"] != "ring":  # its centre is background
                assert torch.allclose(frame[:, int(y), int(x)], torch.tensor(scenes.COLOURS[obj["colour"]]), atol=1e-6)
            seen = edited["objects"][0]["colour"] if clip.edit[0] == "colour" else edited["background"]["colour"]
            assert seen == clip.edit[1] != obj["colour"] and clip.edit[1] != bg["colour"]


def test_the_motion_is_what_the_labels_say():
    for clip in scene_clips(9, T):
        cells = [lab["objects"][0]["cell"] for lab in clip.labels]
        sizes = [lab["objects"][0]["size"] for lab in clip.labels]
        if clip.motion == "move":  # across the image: two columns or two rows
            assert abs(cells[0] % 3 - cells[-1] % 3) == 2 or abs(cells[0] // 3 - cells[-1] // 3) == 2
        else:
            assert len(set(cells)) == 1 and torch.equal(clip.centres, clip.centres[:1].expand(T, 2))
        assert len(set(sizes)) == (2 if clip.motion == "grow" else 1)
        assert abs(clip.angles[-1] - clip.angles[0]) == pytest.approx(TURN if clip.motion == "rotate" else 0)
        # undoing the known motion leaves far less than undoing the reverse motion
        known = compensated_error(clip.frames, clip.centres, clip.radii, clip.angles)
        assert known < 0.7 * compensated_error(clip.frames, clip.centres.flip(0), clip.radii.flip(0), -clip.angles)


def test_warp_with_angles_undoes_a_rotation():
    clip = scene_clip(1, 3)
    assert clip.motion == "rotate"
    turned = compensated_error(clip.frames, clip.centres, clip.radii, clip.angles)
    assert turned < 0.3 * compensated_error(clip.frames, clip.centres, clip.radii)
    still = warp_next(clip.frames, clip.centres, clip.radii, torch.zeros(3))
    assert torch.equal(still, warp_next(clip.frames, clip.centres, clip.radii))
    with pytest.raises(ValueError, match=r"^angles: expected \(3,\), got \(2,\)$"):
        warp_next(clip.frames, clip.centres, clip.radii, clip.angles[:2])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: scene_clip(-1), "index: expected an int >= 0, got -1"),
        (lambda: scene_clip(0, num_frames=1), "num_frames: expected an int >= 2, got 1"),
        (lambda: scene_clip(0, seed=True), "seed: expected an int >= 0, got True"),
        (lambda: scene_clips(0), "n: expected an int >= 1, got 0"),
    ],
)
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
