"""Command-line pieces: argument types that refuse bad values in one line, the one-line parser, `Option`."""

from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: `unetlab train ddpm: error: argument --size: ...`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Option:
    """One command-line option, kept as the arguments of `parser.add_argument(*flags, **kwargs)`."""

    def __init__(self, *flags: str, **kwargs):
        self.flags, self.kwargs = flags, kwargs

    @property
    def dest(self) -> str:
        """The attribute of the parsed namespace that holds its value."""
        return self.kwargs.get("dest") or self.flags[-1].lstrip("-").replace("-", "_")

    def add_to(self, parser) -> None:
        parser.add_argument(*self.flags, **self.kwargs)


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(low: int):
    """An integer >= `low`."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def open_unit_float(text: str) -> float:
    """A number in the open interval (0, 1), e.g. an EMA decay."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def unit_float(text: str) -> float:
    """A number in the closed interval [0, 1], e.g. a final learning-rate ratio."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def any_float(text: str) -> float:
    return _number(float, text)


def duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "1.5h" (a positive length of time)."""
    units = {"s": 1, "m": 60, "h": 3600}
    unit = text[-1:].lower() if text[-1:].lower() in units else "s"
    number = text[:-1] if text[-1:].lower() in units else text
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 600, 90s, 10m or 1h, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a duration > 0 (e.g. 10m), got {text!r}")
    return value


def channel_list(text: str) -> tuple[int, ...]:
    """Four positive integers separated by commas, each a multiple of 16 (the UNet's group norm), e.g. 32,64,128,128."""
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four comma-separated integers, got {text!r}") from None
    if len(values) != 4 or any(v < 16 or v % 16 for v in values):
        raise argparse.ArgumentTypeError(f"expected four multiples of 16 separated by commas, got {text!r}")
    return values
