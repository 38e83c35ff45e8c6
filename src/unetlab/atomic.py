"""Atomic writes of files and folders: a temporary sibling `.tmp-<pid>-<random>-<name>` is filled, then renamed.

What appears has the modes of an ordinary file or folder under the user's umask (0644/0755 under 022), whatever the
writer used (`mkstemp` and safetensors make 0600 files); a write that fails, JSON that cannot be serialised
included, leaves nothing behind. The `.tmp-` prefix is the one `commands.paths` and
`checkpoint.clean_partial` recognise as a killed write.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

PREFIX = ".tmp-"


def sibling(path: Path) -> Path:
    """A fresh temporary name next to `path` that keeps its name (and so its suffix) at the end."""
    return path.with_name(f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def umask() -> int:
    """The process's umask, read from /proc where there is one (setting it to read it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path`, and everything under it when it is a folder, the modes the umask gives new files and folders."""
    mask = umask()
    for p in (path, *path.rglob("*")) if path.is_dir() else (path,):
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def discard(path: Path) -> None:
    """Remove a temporary file or folder, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write(path, fill: Callable[[Path], object]) -> Path:
    """`fill(tmp)` writes a file or folder at a temporary sibling of `path`, which then replaces `path` (a folder
    replaces an existing folder); on any failure the sibling is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path)
    try:
        fill(tmp)
        apply_umask(tmp)
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return path


def write_text(path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return write(path, lambda tmp: tmp.write_text(text))


def write_json(path, data, indent: int = 2) -> Path:
    """Write `data` as JSON to `path` atomically (serialised before anything touches the disk)."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
