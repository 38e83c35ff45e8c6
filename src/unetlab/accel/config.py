"""The base of every accelerator's config: a frozen, validated dataclass that saves to and loads from JSON.

`cfg.to_dict()` is `{"kind": "unetlab.<kind>", "version": 1, <fields>}`; `load_config(path_or_dict)` returns the
config of the kind it names, validated again by its dataclass. `apply(target, cfg)` applies a config with the
accelerator its kind names (`unetlab.accel.apply(pipe, load_config("bc.json"))`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

_KINDS: dict[str, type] = {}


def _plain(value):
    """A JSON value for a config field (tuples as lists; objects with `to_dict` as their dict; paths as strings)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path, data: dict, indent: int = 2) -> Path:
    """Write `data` as JSON atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=indent)
    os.replace(tmp, path)
    return path

@dataclass(frozen=True)
class AccelConfig:
    """Subclasses set `kind`, validate in `__post_init__` and implement `apply_to(target) -> handle`."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            _KINDS[cls.kind] = cls

    def to_dict(self) -> dict:
        return {"kind": f"unetlab.{self.kind}", "version": 1,
                **{f.name: _plain(getattr(self, f.name)) for f in fields(self)}}

    @classmethod
    def from_dict(cls, d: dict) -> "AccelConfig":
        if not isinstance(d, dict) or d.get("kind") != f"unetlab.{cls.kind}":
            got = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"config: expected kind 'unetlab.{cls.kind}', got {got!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"kind", "version"})
        if unknown:
            raise ValueError(f"config: unknown field(s) {', '.join(unknown)} for {cls.kind}; valid: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path) -> Path:
        """Write the config as JSON atomically (temporary file, then rename)."""
        return write_json(path, self.to_dict())

    def apply_to(self, target):
        raise NotImplementedError

    @classmethod
    def load(cls, path) -> "AccelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def load_config(source) -> AccelConfig:
    """The config saved in a JSON file (or given as its dict), of the kind it names."""
    d = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    kind = str(d.get("kind", "")).removeprefix("unetlab.") if isinstance(d, dict) else ""
    if kind not in _KINDS:
        raise ValueError(f"config: kind {d.get('kind') if isinstance(d, dict) else None!r} is not an accelerator; "
                         f"valid: {', '.join('unetlab.' + k for k in sorted(_KINDS))}")
    return _KINDS[kind].from_dict(d)


def apply(target, config: AccelConfig):
    """Apply `config` to a pipeline or UNet with the accelerator of its kind; returns the handle."""
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config: expected an accelerator config (e.g. BranchCacheConfig), got {type(config).__name__}")
    return config.apply_to(target)
