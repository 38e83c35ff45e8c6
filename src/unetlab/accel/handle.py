"""The one protocol every accelerator is built on.

`Handle`: one claim of its kind on the UNet (checked against the stacking table), the removable parts it
installed, `.remove()` (idempotent, any order with other handles: scheduler methods are shared through one
`patching.StepSource`), a context manager, and its validated config on `handle.config`.

`Accelerator(Handle)`: also patches the UNet's forward and tells the technique, for every UNet call, a `Call`:
- `step`: the index of the step among the steps this pipeline call runs (img2img's `strength`, SDXL's
  `denoising_start`/`denoising_end` run part of the schedule; step 0 is the first step run), read from the
  scheduler (never from a timestep's value); on a bare UNet without a scheduler, the number of calls since
  `reset()`;
- `slot`: which UNet call of that step it is (SAG calls twice, Panorama once per view, ...); cached state is
  kept per slot and never fed to another slot's batch;
- `fresh`: whether the slot's inputs (sample shape and the step-independent conditioning) are those of its last
  full call; a call that is not fresh must run full (CFG cut-off drops the batch, a callback replaces
  `prompt_embeds`). Conditioning is compared by tensor identity (storage, shape, version: no device sync), and
  by value only when a pipeline passes new tensors (Panorama concatenates its embeddings at every call).
State is reset at each call's `scheduler.set_timesteps`. When `pipe.scheduler` is replaced after applying,
the handle follows the new scheduler at its next UNet call (which starts a new run). One run at a time: a call from
another thread while a run is going on is refused in one line before it touches anything (`concurrency.RunOwner`).

A `torch.compile`d UNet (an `OptimizedModule`) is patched through the model it wraps: while handles are on, the
wrapper enters the model eagerly (`patching.EagerEntry`), the handle's per-call Python runs outside any graph
(`_unet_forward` is compiler-disabled, which also covers a UNet compiled after applying), and `compiled(fn)` runs the
model's forward (or `encode`/`decode`) under the wrapper's compile context; `.remove()` drops the graphs traced
while the patches were on (`forget_compiled`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from ..patching import EagerEntry, ForwardPatch, Slots, StepClock, claim, release, resolve
from .binding import Binder
from .concurrency import RunOwner
from .row_view import RowView, take
from .stacking import check as check_stacking

# Forward arguments that change at every step by design and only feed the encoder side (control residuals).
PER_STEP = frozenset(
    {
        "sample",
        "timestep",
        "return_dict",
        "down_block_additional_residuals",
        "mid_block_additional_residual",
        "down_intrablock_additional_residuals",
    }
)


def signature(value) -> Any:
    """A cheap, sync-free fingerprint of (nested) call arguments: tensors by storage, shape, dtype and version."""
    if torch.is_tensor(value):
        version = None if value.is_inference() else value._version
        return ("tensor", value.data_ptr(), tuple(value.shape), value.stride(), value.dtype, value.device, version)
    if isinstance(value, dict):
        return tuple((k, signature(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(signature(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return ("object", id(value))


def same_values(a, b) -> bool:
    """Whether two (nested) argument values are equal element for element (tensors: same shape, dtype, values)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (
            torch.is_tensor(a)
            and torch.is_tensor(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and bool(torch.equal(a, b))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    return a is b or (isinstance(a, (bool, int, float, str)) and a == b)


def step_independent(bound: dict) -> dict:
    return {k: v for k, v in bound.items() if k not in PER_STEP}


def call_signature(bound: dict) -> tuple:
    """What a cached result depends on beyond the step: the sample's shape and the step-independent arguments."""
    sample = bound["sample"]
    return (
        (tuple(sample.shape), sample.dtype, sample.device),
        tuple((k, signature(v)) for k, v in bound.items() if k not in PER_STEP),
    )


def position(timestep, timesteps) -> int | None:
    """The index of `timestep` in `timesteps` when it is a view of it (how pipelines iterate), else None."""
    if not (torch.is_tensor(timestep) and torch.is_tensor(timesteps)) or timestep.numel() != 1 or timesteps.ndim != 1:
        return None
    if timestep.untyped_storage().data_ptr() != timesteps.untyped_storage().data_ptr() or timesteps.stride(0) == 0:
        return None
    delta, stride = timestep.storage_offset() - timesteps.storage_offset(), timesteps.stride(0)
    if delta % stride or not 0 <= delta // stride < len(timesteps):
        return None
    return delta // stride


def forward_signature(module) -> inspect.Signature:
    sig = inspect.signature(type(module).forward)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


@dataclass
class Run:
    """One pipeline call: how many steps it runs and where its first step sits in `scheduler.timesteps`."""

    num_steps: int | None
    offset: int | None

    def steps(self) -> int:
        """`num_steps`, where the caller needs it known."""
        if self.num_steps is None:
            raise RuntimeError("this pipeline call's number of steps is unknown (its scheduler has no timesteps)")
        return self.num_steps

    def index(self, step: int) -> int:
        """Where step `step` of this call sits in `scheduler.timesteps`, where the caller needs it known."""
        if self.offset is None:
            raise RuntimeError("this pipeline call's first step could not be placed in its scheduler's timesteps")
        return self.offset + step


@dataclass
class Call:
    step: int
    slot: int
    fresh: bool
    signature: tuple
    bound: dict = field(repr=False)
    view: RowView | None = None  # the call is on some rows of the batch the pipeline passed (`row_view`)


def uncompiled(unet) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(the model, its `torch.compile` wrapper or None): `torch.compile(unet)` returns an `OptimizedModule` whose
    `_orig_mod` is the model; accelerators patch the model and run its calls under the wrapper's compile context."""
    inner = getattr(unet, "_orig_mod", None)
    if isinstance(inner, torch.nn.Module) and hasattr(unet, "dynamo_ctx"):
        return inner, unet
    return unet, None


def forget_compiled(fns) -> None:
    """Drop the graphs torch.compile traced from `fns` while a handle's patches were on. Dynamo's guards (on each
    module's `forward` and on the Python state the patches read) already keep them from running once the patches
    are gone, but they would stay in its cache and count towards `torch._dynamo.config.recompile_limit` (after a
    few apply/remove cycles dynamo would stop compiling the UNet). The cache is per code object, so the next call of
    the plain UNet compiles it again, as does any other compiled model sharing that code (diffusers'
    `apply_lora_scale` wraps several models' forward)."""
    for fn in fns:
        code = getattr(fn, "__code__", None)
        if code is not None:
            torch._C._dynamo.eval_frame.reset_code(code)


class Handle:
    """Claim, stacking check, removable parts, `.remove()`, context manager; `config` is the validated config."""

    kind: str = ""  # the kind it claims: a class constant, set per handle by the peers' `PeerHandle`

    def __init__(self, unet, config=None) -> None:
        self.unet, self.config = unet, config
        self._parts: list = []
        check_stacking(unet, self.kind)
        claim(unet, self.kind, self)
        self._claimed = True

    def _add(self, part):
        self._parts.append(part)
        return part

    def remove(self) -> None:
        """Restore everything this handle patched, exactly; calling it twice is harmless."""
        while self._parts:
            self._parts.pop().remove()
        if self._claimed:
            self._claimed = False
            release(self.unet, self.kind)
        self.clear()

    def clear(self) -> None:
        """Drop cached state (subclasses)."""

    def __enter__(self):
        if not self._claimed:
            raise RuntimeError(
                f"{self.kind}: this handle was removed (by .remove() or the end of a with block); "
                "apply it again for a new handle"
            )
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Accelerator(Handle):
    """A handle that sees every UNet call as a `Call`; subclasses implement `forward(original, call, args, kwargs)`,
    and may override `install()`, `start(run)` (first call of a run), `before_step(step, slot, kwargs)`, `clear()`."""

    def __init__(self, target, config, scheduler=None) -> None:
        pipe, unet = resolve(target)
        unet, self._wrapper = uncompiled(unet)
        super().__init__(unet, config)
        self.pipe = pipe
        self._compiled: dict = {}
        self.clock: StepClock | None = None
        self.calls: list[tuple[int, bool]] = []
        self.owner = RunOwner(self.kind, pipe)
        try:
            self._signature = forward_signature(unet)
            self._bind = Binder(self._signature)
            scheduler = pipe.scheduler if pipe is not None else scheduler
            if scheduler is not None:
                self._listen(scheduler)
            self._add(ForwardPatch(unet, f"unetlab.{self.kind}", self._unet_forward))
            if self._wrapper is not None:
                self._add(EagerEntry(self._wrapper))
            self.install()
        except BaseException:
            self.remove()
            raise
        self._reset()

    # ------------------------------------------------------------------ subclass interface
    def install(self) -> None:
        """Install the technique's own patches (with `self._add`)."""

    def start(self, run: Run) -> None:
        """The first UNet call of a run is about to be handled."""

    def before_step(self, step: int, slot: int, kwargs: dict) -> None:
        """The scheduler is about to step (kwargs: model_output, timestep, sample)."""

    def forward(self, original, call: Call, args, kwargs):
        raise NotImplementedError

    @property
    def takes_rows(self) -> bool:
        """Whether `forward` handles a `Call.view` (a handle stacked above offers one only then)."""
        return False

    def wants_full(self, step: int) -> bool:
        """Whether step `step` runs the whole UNet on its inputs by the technique's schedule (a handle stacked above
        that offers row views runs the whole batch there)."""
        return True

    # ------------------------------------------------------------------ lifecycle
    def _listen(self, scheduler) -> None:
        self.clock = StepClock(
            scheduler, on_start=self._on_start, before_step=self._before_step, on_enter=self.owner.enter
        )

    def _on_start(self) -> None:
        if self.pipe is not None:
            self.pipe.__dict__.pop("_num_timesteps", None)  # the pipeline sets it again to the steps it runs
        self._reset()

    def _before_step(self, step: int, slot: int, kwargs: dict) -> None:
        if self.run is not None:
            self.before_step(step, slot, kwargs)

    def reset(self) -> None:
        """Forget cached state and start counting steps from 0 (automatic at each pipeline call); on a bare UNet, the
        run that follows belongs to the calling thread while the calling function is running."""
        self.owner.enter(start=True)
        self._reset()

    def _reset(self) -> None:
        """Forget cached state and the run."""
        self.run: Run | None = None
        self.calls = []
        self._slots, self._n = Slots(), 0
        self._fresh: dict[int, tuple] = {}
        self.clear()

    def remove(self) -> None:
        if self.clock is not None:
            self.clock.remove()
            self.clock = None
        super().remove()
        forget_compiled(self._compiled)
        self._compiled.clear()

    @property
    def current_run(self) -> Run:
        """The run in progress: set at the first UNet call of a pipeline call (or after `reset()`)."""
        if self.run is None:
            raise RuntimeError(f"{self.kind}: no run in progress; the run state exists only during a UNet call")
        return self.run

    @property
    def step_clock(self) -> StepClock:
        """The clock on the pipeline's scheduler (a bare UNet has none)."""
        if self.clock is None:
            raise RuntimeError(f"{self.kind}: this handle follows no scheduler (it was applied to a bare UNet)")
        return self.clock

    def _follow(self, scheduler) -> None:
        """`pipe.scheduler` was replaced: listen to the new one; this call starts a new run."""
        self.step_clock.remove()
        self._listen(scheduler)
        self._reset()

    # ------------------------------------------------------------------ the patched forward
    def _start_run(self, timestep) -> Run:
        if self.clock is None:
            return Run(None, None)
        ts = self.clock.scheduler.timesteps
        offset = position(timestep, ts)
        if offset is not None:
            offset -= self.clock.step_index
        else:
            offset = getattr(self.clock.scheduler, "begin_index", None)
        n = self.pipe.__dict__.get("_num_timesteps") if self.pipe is not None else None
        if not isinstance(n, int):
            n = len(ts) - (offset or 0) if torch.is_tensor(ts) else None
        if offset is None and torch.is_tensor(ts) and n == len(ts) and self.clock.step_index == 0:
            offset = 0  # the call runs the whole schedule
        return Run(n, offset)

    def follow_scheduler(self) -> None:
        """Listen to `pipe.scheduler` if it was replaced since the last call (a new run starts)."""
        if self.pipe is not None and self.clock is not None and self.pipe.scheduler is not self.clock.scheduler:
            self._follow(self.pipe.scheduler)

    def compiled(self, fn):
        """`fn` run under the compile context of the UNet's `torch.compile` wrapper (the one given, or `pipe.unet`
        when it wraps this UNet at call time), else `fn` itself."""
        wrapper = self.pipe.unet if self.pipe is not None else self._wrapper
        ctx = getattr(wrapper, "dynamo_ctx", None) if getattr(wrapper, "_orig_mod", None) is self.unet else None
        if ctx is None:
            return fn
        memo = self._compiled.get(fn)
        if memo is None or memo[0] is not ctx:
            memo = self._compiled[fn] = (ctx, ctx(fn))
        return memo[1]

    @torch.compiler.disable
    def _unet_forward(self, original, *args, **kwargs):
        """Step, slot and freshness in Python, outside any compiled graph; the model's own forward runs compiled when
        the UNet is (a stacked handle's forward underneath compiles its own calls)."""
        view = take()
        if view is not None and not self.takes_rows:
            raise RuntimeError(f"{self.kind}: was offered a call on some rows of its batch, which it cannot take")
        self.owner.enter()
        if getattr(original, "__self__", None) is self.unet:
            original = self.compiled(original)
        self.follow_scheduler()
        bound = self._bind(args, kwargs)
        step = self.clock.step_index if self.clock is not None else self._n
        self._n += 1
        slot = self._slots.of(step)
        if self.run is None:
            self.run = self._start_run(bound["timestep"])
            self.start(self.run)
        whole = bound if view is None else view.bound  # freshness: on the inputs of the whole batch
        sig = call_signature(whole)
        last = self._fresh.get(slot)
        fresh = last is not None and (
            last[0] == sig or (last[0][0] == sig[0] and same_values(last[1], step_independent(whole)))
        )
        return self.forward(original, Call(step, slot, fresh, sig, bound, view), args, kwargs)

    def mark_full(self, call: Call) -> None:
        """The call ran full: later calls of its slot with the same inputs may reuse its state."""
        self._fresh[call.slot] = (call.signature, step_independent(call.bound))

    def aligned(self, call: Call) -> bool:
        """Whether the call's timestep is `scheduler.timesteps[offset + step]` (checked without a device sync)."""
        if self.clock is None or self.run is None or self.run.offset is None:
            return False
        expected = self.run.offset + call.step
        timestep, ts = call.bound["timestep"], self.clock.scheduler.timesteps
        pos = position(timestep, ts)
        if pos is not None:
            return pos == expected
        host = self.clock.timesteps
        if expected >= len(host):
            return False
        if torch.is_tensor(timestep):
            if timestep.device.type != "cpu" or timestep.numel() != 1:
                return False
            timestep = timestep.reshape(()).tolist()
        return isinstance(timestep, (int, float)) and abs(float(timestep) - float(host[expected])) <= 1e-6 * max(
            1.0, abs(float(host[expected]))
        )
