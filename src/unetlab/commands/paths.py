"""Paths a command names, checked before any work starts, and what a failed run must not leave behind.

Outputs (`--out` folders, `--json` / `--grid` files) must be creatable; inputs that exist on disk (model folders,
run folders, JSON files) must hold parseable JSON and complete safetensors files. A run that fails removes the
output folder it created (unless it holds a committed training checkpoint, which `--resume` continues) and the
temporary files it left.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

from ..atomic import PREFIX as TMP_PREFIX

OUT_DIRS = ("out",)  # argument names that are output folders
OUT_FILES = ("json", "grid", "recipe")  # argument names that are output files
OPTION = {"recipe": "--out"}  # the option an argument name comes from, where the two differ (`unetlab tune`)
# argument names that may name files to check
INPUTS = ("model", "init_from", "teacher", "vae", "unet", "run", "key_steps", "block_skip_plan", "data")
MAX_FILES = 2000  # entries of an input folder scanned (an image folder can hold many more)


class UsageError(ValueError):
    """Bad input on the command line: reported in one line, exit code 2."""


def _writable_parent(path: Path) -> Path | None:
    """The nearest existing ancestor of `path`, or None when it is not a writable folder."""
    parent = path.parent if path.parent != path else path
    while not parent.exists():
        if parent.parent == parent:
            return None
        parent = parent.parent
    return parent if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK) else None


def check_out_dir(path: str | Path, arg: str = "--out") -> None:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{arg}: {path} is a file; give a folder (new or existing)")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{arg}: {path} is not writable")
    if not path.exists() and _writable_parent(path) is None:
        raise UsageError(f"{arg}: cannot create {path}: no writable folder above it")


def check_out_file(path: str | Path, arg: str) -> None:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{arg}: {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{arg}: {path} is not writable")
    if not path.exists() and _writable_parent(path) is None:
        raise UsageError(f"{arg}: cannot create {path}: no writable folder above it")


def check_json(path: Path, arg: str) -> None:
    try:
        json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{arg}: {path} is not valid JSON ({err})") from None


def check_safetensors(path: Path, arg: str) -> None:
    """Raise UsageError unless `path` is a complete safetensors file (header parses, sizes add up)."""
    size = path.stat().st_size
    bad = f"{arg}: {path} is not a valid safetensors file"
    if size < 8:
        raise UsageError(f"{bad} (truncated: {size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise UsageError(f"{bad} (truncated: header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{bad} (corrupt header)") from None
    if not isinstance(header, dict):
        raise UsageError(f"{bad} (corrupt header)")
    end = max(
        (
            v["data_offsets"][1]
            for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
        ),
        default=0,
    )
    if 8 + n + end != size:
        raise UsageError(f"{bad} (truncated: tensors need {8 + n + end} bytes, file has {size})")


def check_input(path: str | Path, arg: str) -> None:
    """Every JSON and safetensors file at or under an existing `path` parses; a missing path is the command's to
    judge."""
    path = Path(path)
    if not path.exists():
        return
    files = [path] if path.is_file() else []
    if path.is_dir():
        for i, f in enumerate(path.rglob("*")):
            if i >= MAX_FILES:
                break
            partial = any(part.startswith(TMP_PREFIX) for part in f.relative_to(path).parts)  # a killed write
            if f.suffix in (".json", ".safetensors") and not partial:
                files.append(f)
    for f in files:
        if f.suffix == ".safetensors":
            check_safetensors(f, arg)
        elif f.suffix == ".json":
            check_json(f, arg)


def check(args) -> None:
    """Check every output and input path of the parsed `args` before the command runs."""
    for name in OUT_DIRS + OUT_FILES + INPUTS:  # "" would mean the current folder
        if getattr(args, name, None) == "":
            what = "a name or a path" if name in INPUTS else "a path"
            arg = name if name == "run" else OPTION.get(name, "--" + name.replace("_", "-"))
            raise UsageError(f"{arg}: empty; give {what}")
    for name in OUT_DIRS:
        if getattr(args, name, None):
            check_out_dir(getattr(args, name), "--" + name)
    for name in OUT_FILES:
        if getattr(args, name, None):
            check_out_file(getattr(args, name), OPTION.get(name, "--" + name))
    for name in INPUTS:
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v:
                check_input(v, name if name == "run" else "--" + name.replace("_", "-"))


def snapshot(args) -> dict[str, bool]:
    """Which output paths of `args` exist before the run."""
    names = [n for n in OUT_DIRS + OUT_FILES if getattr(args, n, None)]
    return {getattr(args, n): Path(getattr(args, n)).exists() for n in names}


def clean_failed(before: dict[str, bool]) -> None:
    """After a failed run: remove outputs it created (a run folder with a committed checkpoint stays, for
    `--resume`) and the temporary files it left in the output folders."""
    for value, existed in before.items():
        path = Path(value)
        if not path.exists():
            continue
        if path.is_dir():
            if not existed and not (path / "latest").is_file():
                shutil.rmtree(path, ignore_errors=True)
                continue
            for tmp in path.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        elif not existed:
            path.unlink(missing_ok=True)
