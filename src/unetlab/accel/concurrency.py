"""One run at a time per handle: a second thread entering while another thread's run is still going is refused.

A handle's state (step, slot, caches) belongs to one pipeline call. `RunOwner.enter(start)` is called before the
handle's state or the scheduler is touched (at `set_timesteps`, `step` and every UNet call): the first thread
takes the handle and notes the frame its run lives in (the pipeline's `__call__`, or for a bare UNet the innermost
caller outside unetlab, diffusers and torch). Another thread is refused in one line while that frame is still on
the owner's stack; once it is gone (the call returned or raised) the next thread takes over. The owner's own calls
cost one thread-id comparison; the stacks are read only when the thread changes.
"""

from __future__ import annotations

import inspect
import sys
import threading
from types import FrameType

_LIBRARIES = frozenset({"unetlab", "diffusers", "torch", "threading", "contextlib", "functools"})


def _call_codes(pipe) -> frozenset:
    """The code objects of `pipe`'s `__call__` and those of its base classes (decorators unwrapped)."""
    if pipe is None:
        return frozenset()
    fns = (inspect.unwrap(c.__dict__["__call__"]) for c in type(pipe).__mro__ if "__call__" in c.__dict__)
    return frozenset(fn.__code__ for fn in fns if hasattr(fn, "__code__"))


def _entry(codes: frozenset) -> tuple[int, object]:
    """(id, code) of the frame the current thread's run lives in: the outermost pipeline call on the stack, else the
    innermost frame outside the libraries, else the thread's first frame."""
    first = sys._getframe(1)
    frame: FrameType | None = first
    outermost: FrameType | None = None
    caller: FrameType | None = None
    while frame is not None:
        if frame.f_code in codes:
            outermost = frame
        elif caller is None and str(frame.f_globals.get("__name__", "")).partition(".")[0] not in _LIBRARIES:
            caller = frame
        first, frame = frame, frame.f_back
    chosen = outermost or caller or first
    return id(chosen), chosen.f_code


def _running(thread: int, entry: tuple[int, object]) -> bool:
    """Whether `thread` still has the frame `entry` on its stack."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if id(frame) == entry[0] and frame.f_code is entry[1]:
            return True
        frame = frame.f_back
    return False


class RunOwner:
    """The thread whose run a handle of `kind` serves; `enter(start)` refuses any other while that run goes on."""

    def __init__(self, kind: str, pipe=None):
        self.kind, self.codes = kind, _call_codes(pipe)
        self.thread: int | None = None
        self.entry: tuple[int, object] | None = None
        self._lock = threading.Lock()

    def enter(self, start: bool = False) -> None:
        """The current thread is about to use the handle (`start`: a new run begins)."""
        me = threading.get_ident()
        if me == self.thread and not start:
            return
        with self._lock:
            thread, entry = self.thread, self.entry
            if thread is not None and thread != me and entry is not None and _running(thread, entry):
                raise RuntimeError(
                    f"{self.kind}: a second pipeline call entered this accelerated UNet from another "
                    "thread while a call is running; one handle serves one call at a time (wait for "
                    "it, or give each thread its own pipeline and handle)"
                )
            self.thread, self.entry = me, _entry(self.codes)
