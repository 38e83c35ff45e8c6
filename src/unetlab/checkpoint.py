"""Atomic training checkpoints: written to a temporary folder, renamed into place, then pointed to by `latest`;
read back whole, falling back to the previous intact checkpoint when the newest has a file that cannot be read."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import PREFIX as TMP_PREFIX
from .atomic import apply_umask, write_text

LATEST = "latest"
PREFIX = "checkpoint-"
# what a truncated or corrupt file raises: safetensors, torch.load (zip reader, unpickler), json; a missing rank
UNREADABLE = (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError)


class CorruptCheckpoint(ValueError):
    """A checkpoint file that cannot be read; the message names the file and the problem."""


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
    apply_umask(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text(out / LATEST, final.name + "\n")
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


def committed(out: Path) -> list[Path]:
    """The committed checkpoints of `out`, newest first, the one `latest` names (when it names one) leading."""
    folders = sorted((p for p in out.glob(f"{PREFIX}*") if p.is_dir()), reverse=True)
    pointer = out / LATEST
    named = out / pointer.read_text(errors="replace").strip() if pointer.is_file() else None
    return sorted(folders, key=lambda p: p != named)


def _problem(err: BaseException) -> str:
    """The first line of an error's message, at most 160 characters."""
    line = next((x.strip() for x in str(err).splitlines() if x.strip()), "")
    line = line or ("the file ends early" if isinstance(err, EOFError) else type(err).__name__)
    return line if len(line) <= 160 else line[:157] + "..."


def _read(path: Path, load):
    try:
        return load(path)
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    except UNREADABLE as err:
        raise CorruptCheckpoint(f"{path}: cannot be read ({_problem(err)})") from None


def _state(path: Path) -> dict:
    state = json.loads(path.read_text())
    if not isinstance(state, dict) or not {"step", "world_size", "history"} <= set(state):
        raise ValueError("not a training state (expected an object with step, world_size and history)")
    return state


def read(path: Path, names, rank: int, check=None) -> dict:
    """Every file of the checkpoint at `path`: state (passed to `check` before anything else is read), weights and
    EMA of each module in `names`, optimiser and rank `rank`'s generator state; `CorruptCheckpoint` names the first
    file that cannot be read."""
    state = _read(path / "state.json", _state)
    if check is not None:
        check(state)
    return {
        "state": state,
        "weights": {n: _read(path / f"{n}.safetensors", load_file) for n in names},
        "ema": {n: _read(path / f"ema_{n}.safetensors", load_file) for n in names},
        "optimizer": _read(path / "optimizer.pt", lambda p: torch.load(p, weights_only=True)),
        "generator": _read(path / "generators.safetensors", lambda p: load_file(p)[f"rank{rank}"]),
    }


def read_newest(out: Path, names, rank: int, say=print, check=None) -> tuple[Path, dict] | None:
    """The newest committed checkpoint of `out` whose files all read (its state passing `check`), `say`ing which
    newer ones were passed over and why; None when there is none; `CorruptCheckpoint` naming the newest one's
    problem when none reads."""
    errors = []
    for path in committed(out):
        try:
            loaded = read(path, names, rank, check)
        except CorruptCheckpoint as err:
            errors.append(err)
            continue
        for err in errors:
            say(f"resume: {err}; continuing from the previous intact checkpoint {path.name}")
        return path, loaded
    if errors:
        raise CorruptCheckpoint(
            f"resume: {errors[0]}; no intact checkpoint in {out} to fall back to (delete the "
            "folder to start again, or choose another --out)"
        )
    return None
