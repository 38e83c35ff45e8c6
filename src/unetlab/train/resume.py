"""What `resume` checks before it continues a run: the stored run is the same command with the same settings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

# Settings that change where and how often a run reports, not what it computes, and `steps`: a run may be
# continued for longer (its learning-rate schedule is then that of the new length).
FREE = ("out", "resume", "progress", "keep", "checkpoint_every", "steps")


def _plain(value):
    return json.loads(json.dumps(value))


def check_resume(stored: dict, cfg, out: Path) -> None:
    """Raise ValueError naming the first setting in which the stored run's config differs from `cfg`."""
    given = _plain(asdict(cfg))
    old_run, new_run = stored.get("run") or {}, given.get("run") or {}
    if old_run.get("command") != new_run.get("command") and old_run.get("command") and new_run.get("command"):
        raise ValueError(
            f"resume: {out} holds a `unetlab {old_run['command']}` run, not `unetlab "
            f"{new_run['command']}`; resume it with that command or choose another --out"
        )
    # only the options this command takes: a run stored before each method had its own options holds every
    # method's, and an option added since is absent from it
    for key in sorted(set(old_run) & set(new_run)):
        if old_run[key] != new_run[key]:
            raise ValueError(
                f"resume: {key.replace('_', '-')} differs from the stored run in {out}: stored "
                f"{old_run[key]!r}, given {new_run[key]!r}"
            )
    for key in sorted(set(stored) - set(FREE) - {"run"}):
        if key in given and stored[key] != given[key]:
            raise ValueError(
                f"resume: {key.replace('_', '-')} differs from the stored run in {out}: stored "
                f"{stored[key]!r}, given {given[key]!r}"
            )
