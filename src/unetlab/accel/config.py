"""The base of every accelerator's config: a frozen, validated dataclass that saves to and loads from JSON.

`cfg.to_dict()` is `{"kind": "unetlab.<kind>", "version": 1, <fields>}`; `load_config(path_or_dict)` returns the
config of the kind it names, validated again by its dataclass; a file of another version, one that is not valid
JSON or not a config is refused in one line naming it. `apply(target, cfg)` applies a config with the
accelerator its kind names (`unetlab.accel.apply(pipe, load_config("bc.json"))`).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import ClassVar

from ..atomic import write_json

_KINDS: dict[str, type[AccelConfig]] = {}
VERSION = 1  # the format version this unetlab writes and reads (configs, block-skip plans, recipes)


def check_version(d: dict, what: str) -> None:
    """Refuse a document of another format version (a newer unetlab's) instead of reading it as this one."""
    v = d.get("version", VERSION)
    if v != VERSION or isinstance(v, bool):
        raise ValueError(
            f"{what}: version {v!r} is not supported: this unetlab reads version {VERSION} (a file "
            "written by a newer unetlab needs that unetlab)"
        )


def read_json(path, what: str):
    """The JSON document in the file `path`; a one-line error naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({err})") from None


def in_file(load, path, what: str):
    """`load(read_json(path))`, its one-line errors saying which file they are about."""
    data = read_json(path, what)
    try:
        return load(data)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{' '.join(str(err).split())} (in {path})") from None


def _plain(value):
    """A JSON value for a config field (tuples as lists; objects with `to_dict` as their dict; paths as strings)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _default(f):
    """A dataclass field's default value (its factory's product; MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


@dataclass(frozen=True)
class AccelConfig:
    """Subclasses set `kind` (the identifier: `to_dict`'s kind, the stacking table's name) and `family` (the bench's
    and tuner's name for the technique), validate in `__post_init__`, implement `apply_to(target) -> handle` and
    `label()` (a row's name) and, when made for a step count, `check_steps(n)`."""

    kind: ClassVar[str] = ""
    family: ClassVar[str] = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            _KINDS[cls.kind] = cls

    def to_dict(self) -> dict:
        return {
            "kind": f"unetlab.{self.kind}",
            "version": 1,
            **{f.name: _plain(getattr(self, f.name)) for f in fields(self)},
        }

    @classmethod
    def from_dict(cls, d: dict) -> AccelConfig:
        if not isinstance(d, dict) or d.get("kind") != f"unetlab.{cls.kind}":
            got = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"config: expected kind 'unetlab.{cls.kind}', got {got!r}")
        check_version(d, "config")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"kind", "version"})
        if unknown:
            raise ValueError(
                f"config: unknown field(s) {', '.join(unknown)} for {cls.kind}; valid: {', '.join(sorted(names))}"
            )
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path) -> Path:
        """Write the config as JSON atomically (temporary file, then rename)."""
        return write_json(path, self.to_dict())

    def apply_to(self, target):
        raise NotImplementedError

    def label(self) -> str:
        """The name of this setting in the bench's rows (e.g. "branch cache N=3 layer")."""
        raise NotImplementedError

    def check_steps(self, num_steps: int) -> None:
        """Raise a one-line ValueError when this config does not fit a call of `num_steps` steps (any fits here)."""

    def non_default(self, *shown: str) -> str:
        """ " name=value" for each field not in `shown` that differs from its default."""
        return "".join(
            f" {f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in shown and getattr(self, f.name) != _default(f)
        )

    @classmethod
    def load(cls, path) -> AccelConfig:
        return in_file(cls.from_dict, path, "config")


def apply(target, config: AccelConfig):
    """Apply `config` to a pipeline or UNet with the accelerator of its kind; returns the handle."""
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config: expected an accelerator config (e.g. BranchCacheConfig), got {type(config).__name__}")
    return config.apply_to(target)
