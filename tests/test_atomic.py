"""Atomic writes (`unetlab.atomic`, used by every writer): files keep the user's umask, a failed write leaves
nothing."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from unetlab import atomic
from unetlab.accel import BranchCacheConfig
from unetlab.recipes import Recipe
from unetlab.schedules import KeySteps
from unetlab.train.grid import save_grid
from unetlab.video import write_frames


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_keep_the_umask(tmp_path, umask_022):
    recipe = Recipe(4, "DDIMScheduler", (BranchCacheConfig(interval=2),))
    files = [
        recipe.save(tmp_path / "r.json"),
        BranchCacheConfig().save(tmp_path / "c.json"),
        atomic.write_json(tmp_path / "d.json", {"a": 1}),
        atomic.write_text(tmp_path / "t.md", "x"),
        atomic.write(tmp_path / "w.safetensors", lambda tmp: save_file({"x": torch.zeros(2)}, tmp)),
        save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png"),
    ]
    KeySteps(4, (0, 2)).save(tmp_path / "k.json")
    files.append(tmp_path / "k.json")
    for f in files:
        assert _mode(f) == 0o644, f.name
    video = write_frames(torch.zeros(2, 3, 4, 4), tmp_path / "video")
    assert _mode(video) == 0o755 and all(_mode(f) == 0o644 for f in video.iterdir())
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "d.json", {"a": object()})
    with pytest.raises(TypeError):
        Recipe(4, "DDIMScheduler", (), {"model": object()}).save(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
    atomic.write_text(tmp_path / "t.md", "old")

    def half(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write(tmp_path / "t.md", half)
    assert (tmp_path / "t.md").read_text() == "old"

    def half_folder(tmp):
        tmp.mkdir()
        (tmp / "a").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write(tmp_path / "folder", half_folder)
    with pytest.raises(ValueError, match="fps"):
        write_frames(torch.zeros(2, 3, 4, 4), tmp_path / "video", fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.md"]


def test_a_folder_replaces_a_folder(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "old").write_text("x")

    def fill(tmp):
        tmp.mkdir()
        (tmp / "new").write_text("y")

    atomic.write(tmp_path / "f", fill)
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
