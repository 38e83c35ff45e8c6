"""The deep path with Clockwork's learned adaptor at cheap steps (Habibian et al. 2024, Sec. 3.2).

At a full step every deep module runs and is stored, as for the identity adaptor (`deep_reuse.DeepPath`), and
the output of the last deep module, r_out^t, is kept per call slot. At a cheap step the deep modules return
their stored outputs without running, except the last, whose output is the adaptor's
phi(r_in^t, r_out^{t+1}, t, text): r_in^t is read at `down_blocks[level-1]`'s downsampler as the shallow path
runs, t is the time embedding the UNet passes to that block (`temb`), the text is the UNet call's
`encoder_hidden_states`, pooled; r_out^{t+1} is the kept output of the slot's previous step (the full step's
or, when several cheap steps follow each other, the adaptor's), which becomes phi's result.
"""

from __future__ import annotations

import inspect
from typing import cast

import torch

from ..unet.partial import num_levels
from .clockwork_adaptor import ClockworkAdaptor, pooled_text
from .deep_reuse import DeepPath
from .side_state import restore


class _Reader:
    """A removable forward pre-hook keeping the first input of `module` at every call."""

    def __init__(self, module: torch.nn.Module):
        self.value: torch.Tensor | None = None
        self._hook = module.register_forward_pre_hook(self._read, with_kwargs=True)

    def _read(self, module, args, kwargs):
        self.value = args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))

    @property
    def tensor(self) -> torch.Tensor:
        """The input of the module's latest call."""
        if self.value is None:
            raise RuntimeError("clockwork: the adaptor's input r_in was not read (its down block has not run)")
        return self.value

    def remove(self) -> None:
        self._hook.remove()
        self.value = None


class AdaptorPath(DeepPath):
    """`DeepPath` of `modules` (`unet`'s deep path below `level`) whose last module is replaced by `adaptor`
    while `reuse` is on.
    `text` is set by the handle before each UNet call (the call's `encoder_hidden_states` or None)."""

    def __init__(self, unet, level: int, modules: list, adaptor: ClockworkAdaptor, name: str):
        adaptor.check(unet, level)
        self.adaptor, self.text = adaptor, None
        self._prev: dict[int, torch.Tensor] = {}
        self._r_in = _Reader(unet.down_blocks[level - 1].downsamplers[0])
        last = unet.up_blocks[num_levels(unet) - level - 1]
        self._last_signature = inspect.signature(last.forward)
        try:
            super().__init__(modules, name)
        except BaseException:
            self._r_in.remove()
            raise

    def clear(self) -> None:
        super().clear()
        self._prev.clear()

    def _forward(self, key: str, original, *args, **kwargs):
        if key != self.modules[-1][0]:
            return super()._forward(key, original, *args, **kwargs)
        entry = self._store.get(self.slot, {}).get(key) if self.reuse else None
        if entry is None:
            out = super()._forward(key, original, *args, **kwargs)
            self._prev[self.slot] = out
            return out
        restore(entry[1])
        temb = self._last_signature.bind(*args, **kwargs).arguments.get("temb")
        r_in, r_prev = self._r_in.tensor, self._prev[self.slot]
        adaptor = self.adaptor
        param = next(adaptor.parameters())
        if param.device != r_in.device or param.dtype != r_in.dtype:
            # ModelMixin.to is typed as a functools.wraps of Module.to, which mypy cannot call as a method
            cast(torch.nn.Module, adaptor).to(device=r_in.device, dtype=r_in.dtype)
        out = adaptor(r_in, r_prev, temb, pooled_text(self.text) if adaptor.text_proj is not None else None)
        self._prev[self.slot] = out
        return out.clone()  # the stored r_out^{t+1} of the next step stays untouched by in-place additions

    def remove(self) -> None:
        self._r_in.remove()
        super().remove()
        self._prev.clear()
