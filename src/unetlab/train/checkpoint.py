"""Atomic training checkpoints: written to a temporary folder, renamed into place, then pointed to by `latest`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LATEST = "latest"
PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / f"{PREFIX}{step:07d}"


def begin(out: Path, step: int) -> Path:
    """A fresh temporary folder to write the checkpoint of `step` into."""
    tmp = out / f"{TMP_PREFIX}{PREFIX}{step:07d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(out: Path, tmp: Path, step: int, keep: int = 2) -> Path:
    """Rename `tmp` to its final name, point `latest` at it (atomic rename) and drop all but the `keep` newest."""
    final = checkpoint_dir(out, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = out / f"{TMP_PREFIX}{LATEST}-{os.getpid()}"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, out / LATEST)
    for old in sorted(out.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(out: Path) -> Path | None:
    """The checkpoint `latest` points to, or None when `out` has none."""
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    path = out / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"resume: {pointer} names {path.name}, which has no state.json")
    return path


def clean_partial(out: Path) -> None:
    """Remove temporary folders left by a process killed while writing a checkpoint."""
    for tmp in out.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
