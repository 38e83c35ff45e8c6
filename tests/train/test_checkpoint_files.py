"""Checkpoint files: written with the user's umask; a corrupt latest checkpoint makes resume fall back to the previous
intact one (and say so), and a run with no intact checkpoint is refused in one line naming the file."""

import os
import stat

import pytest
import torch
from tiny import cfg, final_weights, tiny_task

from unetlab import checkpoint as ckpt
from unetlab.train import train


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("a") / "run"
    train(tiny_task(), cfg(out))
    return final_weights(out)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_checkpoints_keep_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        train(tiny_task(), cfg(tmp_path / "run", steps=3))
    finally:
        os.umask(old)
    for p in (tmp_path / "run").rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


@pytest.mark.parametrize("name", ["optimizer.pt", "unet.safetensors", "state.json", "generators.safetensors"])
def test_resume_falls_back_to_the_previous_intact_checkpoint(tmp_path, capsys, uninterrupted, name):
    out = tmp_path / "run"
    train(tiny_task(), cfg(out))
    assert [p.name for p in ckpt.committed(out)] == ["checkpoint-0000006", "checkpoint-0000003"]
    bad = out / "checkpoint-0000006" / name
    _truncate(bad)
    capsys.readouterr()
    state = train(tiny_task(), cfg(out, resume=True))
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resume:")]
    assert (
        len(said) == 1
        and str(bad) in said[0]
        and "continuing from the previous intact checkpoint checkpoint-0000003" in said[0]
    )
    assert state["step"] == 6
    for a, b in zip(uninterrupted, final_weights(out)):  # steps 4-6 trained again: the same weights, bit for bit
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_intact_checkpoint_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "run"
    train(tiny_task(), cfg(out))
    for folder in ckpt.committed(out):
        _truncate(folder / "state.json")
    with pytest.raises(ckpt.CorruptCheckpoint) as err:
        train(tiny_task(), cfg(out, resume=True))
    text = str(err.value)
    assert "\n" not in text and str(out / "checkpoint-0000006" / "state.json") in text
    assert "is not valid JSON" not in text and "cannot be read" in text and "no intact checkpoint" in text
    with pytest.raises(ValueError, match="already holds a training run"):
        train(tiny_task(), cfg(out))
