"""Key-step schedules: which sampling steps run the full UNet (Faster Diffusion, Li et al. 2023, Sec. 3.3 and 4).

Steps are 0-based indices into a pipeline call's loop, i.e. into `scheduler.timesteps` (for Heun-type
schedulers, whose `timesteps` repeat, that is every model call, `len(scheduler.timesteps)` of them).
Step 0 is always a key step. A spec is one of:

- a name: `"paper"` / `"sd"` (SD DDIM-50 list `[0, 1, 2, 3, 5, 10, 15, 25, 35]`, cut below the step count for
  shorter schedules as the paper does for DPM-Solver-20; defined up to 50 steps), `"dreambooth"` (the SD list
  plus 40), `"if_stage1"` (key iff `i > 85 or i < 10 or i % 5 == 0`), `"if_stage2"` and `"all"` (every step),
  `"if_stage3"` (`[0, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65]`), `"community"` (key iff `i % 4 == 0`),
  `"adaptive"` (the SD list's positions scaled from 50 to the call's step count, plus steps 0-3);
- `"uniform:N"`: every N-th step (0, N, 2N, ...);
- an explicit list of step indices (sorted, unique, integers, starting with 0);
- a `KeySteps` object, or the path of a JSON file written by `KeySteps.save` (or by the analysis tools):
  `{"kind": "key_steps", "num_steps": N, "key_steps": [0, ...], "source": "..."}` — `num_steps` is the step
  count the schedule was made for; a call with another step count is an error.

`check_spec(spec)` validates a spec's form (at apply time); `resolve(spec, num_steps)` returns the sorted key
steps for a call with `num_steps` steps, or raises `KeyStepsError` (a one-line `ValueError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_json

SD_DDIM50 = (0, 1, 2, 3, 5, 10, 15, 25, 35)
DREAMBOOTH = SD_DDIM50 + (40,)
IF_STAGE3 = (0, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65)
NAMES = ("paper", "sd", "dreambooth", "if_stage1", "if_stage2", "if_stage3", "community", "adaptive", "all")
_VALID = (
    "a name (" + ", ".join(NAMES) + "), 'uniform:N', a sorted list of unique step indices starting with 0, "
    "a KeySteps or a .json path"
)


class KeyStepsError(ValueError):
    """A key-step spec that is malformed or does not fit the call's number of steps."""


@dataclass(frozen=True)
class KeySteps:
    """An explicit key-step schedule made for `num_steps` sampling steps (saved to / loaded from JSON)."""

    num_steps: int
    key_steps: tuple[int, ...]
    source: str = field(default="", compare=False)

    def __post_init__(self):
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps < 1:
            raise KeyStepsError(f"key_steps: num_steps must be a positive int, got {self.num_steps!r}")
        object.__setattr__(self, "key_steps", tuple(_check_list(self.key_steps)))
        _check_range(self.key_steps, self.num_steps)

    def to_dict(self) -> dict:
        return {
            "kind": "key_steps",
            "num_steps": self.num_steps,
            "key_steps": list(self.key_steps),
            "source": self.source,
        }

    def save(self, path) -> None:
        """Write the schedule as JSON, atomically."""
        write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path) -> KeySteps:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KeyStepsError(f"key_steps: cannot read a schedule from {str(path)!r}: {e}") from None
        if not isinstance(data, dict) or data.get("kind") != "key_steps" or not {"num_steps", "key_steps"} <= set(data):
            raise KeyStepsError(
                f"key_steps: {str(path)!r} is not a key-step schedule; expected "
                '{"kind": "key_steps", "num_steps": N, "key_steps": [0, ...]}'
            )
        return cls(data["num_steps"], tuple(data["key_steps"]), str(data.get("source", "")))


Spec = str | Sequence[int] | KeySteps | os.PathLike


def _check_list(steps) -> list[int]:
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise KeyStepsError(f"key_steps: expected {_VALID}, got {steps!r}")
    steps = list(steps)
    if not steps:
        raise KeyStepsError("key_steps: the list is empty; it must contain at least step 0")
    bad = [s for s in steps if not isinstance(s, int) or isinstance(s, bool)]
    if bad:
        raise KeyStepsError(f"key_steps: step indices must be ints, got {bad[0]!r}")
    if len(set(steps)) != len(steps):
        raise KeyStepsError(f"key_steps: duplicate step indices in {steps}")
    if steps != sorted(steps):
        raise KeyStepsError(f"key_steps: step indices must be sorted ascending, got {steps}")
    if steps[0] != 0:
        raise KeyStepsError(f"key_steps: step 0 must be a key step, got {steps}")
    return steps


def _check_range(steps: Sequence[int], num_steps: int) -> None:
    if steps[-1] >= num_steps:
        raise KeyStepsError(
            f"key_steps: step {steps[-1]} is out of range for a call with {num_steps} steps (valid: 0..{num_steps - 1})"
        )


def _uniform_stride(spec: str) -> int:
    value = spec.split(":", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise KeyStepsError(f"key_steps: 'uniform:N' needs a positive integer N, got {spec!r}")
    return int(value)


def check_spec(spec: Spec) -> None:
    """Raise `KeyStepsError` if `spec` is malformed (what can be checked without the call's step count)."""
    if isinstance(spec, KeySteps):
        return
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".json")):
        KeySteps.load(spec)
    elif isinstance(spec, str):
        if spec.startswith("uniform:"):
            _uniform_stride(spec)
        elif spec not in NAMES:
            raise KeyStepsError(f"key_steps: unknown spec {spec!r}; expected {_VALID}")
    else:
        _check_list(spec)


def adaptive(num_steps: int) -> list[int]:
    """The SD DDIM-50 key positions scaled to `num_steps` (rounded half up), plus the first four steps."""
    scaled = {(p * num_steps + 25) // 50 for p in SD_DDIM50}
    return sorted(s for s in scaled | {0, 1, 2, 3} if s < num_steps)


def resolve(spec: Spec, num_steps: int) -> tuple[int, ...]:
    """The sorted key steps of `spec` for a call with `num_steps` steps; raises `KeyStepsError`."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise KeyStepsError(f"num_steps: expected a positive int, got {num_steps!r}")
    check_spec(spec)
    n = num_steps
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".json")):
        spec = KeySteps.load(spec)
    if isinstance(spec, KeySteps):
        if spec.num_steps != n:
            raise KeyStepsError(
                f"key_steps: the schedule was made for {spec.num_steps} steps, the call has {n}; "
                f"derive one for {n} steps or use 'adaptive'"
            )
        return spec.key_steps
    if isinstance(spec, str):
        if spec in ("paper", "sd", "dreambooth"):
            base = DREAMBOOTH if spec == "dreambooth" else SD_DDIM50
            if n > 50:
                raise KeyStepsError(
                    f"key_steps: {spec!r} is defined for up to 50 steps, the call has {n}; "
                    "use 'adaptive', 'uniform:N' or a list"
                )
            return tuple(s for s in base if s < n)
        if spec == "if_stage1":
            return tuple(i for i in range(n) if i > 85 or i < 10 or i % 5 == 0)
        if spec == "if_stage3":
            return tuple(s for s in IF_STAGE3 if s < n)
        if spec in ("if_stage2", "all"):
            return tuple(range(n))
        if spec == "community":
            return tuple(range(0, n, 4))
        if spec == "adaptive":
            return tuple(adaptive(n))
        return tuple(range(0, n, _uniform_stride(spec)))
    steps = _check_list(spec)
    _check_range(steps, n)
    return tuple(steps)
