"""A forward's call arguments by parameter name, as `inspect.Signature.bind(...).arguments` gives them, at a few dict
operations per call (inspect's binding walks every parameter in Python; a handle binds every UNet call)."""

from __future__ import annotations

import inspect

_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
_SIMPLE = (_POSITIONAL, inspect.Parameter.KEYWORD_ONLY)


class Binder:
    """`binder(args, kwargs)` equals `dict(signature.bind(*args, **kwargs).arguments)` (same names, values and order);
    a signature with positional-only or variadic parameters, and a call naming an unknown, doubled or missing
    argument, goes through `Signature.bind` (which raises its own TypeError)."""

    def __init__(self, signature: inspect.Signature):
        self.signature = signature
        params = list(signature.parameters.values())
        self._simple = all(p.kind in _SIMPLE for p in params)
        self._positional = tuple(p.name for p in params if p.kind is _POSITIONAL)
        self._names = tuple(p.name for p in params)
        self._known = frozenset(self._names)
        self._required = frozenset(p.name for p in params if p.default is p.empty)

    def __call__(self, args: tuple, kwargs: dict) -> dict:
        if self._simple and len(args) <= len(self._positional):
            given = dict(zip(self._positional, args))
            if given.keys().isdisjoint(kwargs) and self._known.issuperset(kwargs):
                given.update(kwargs)
                if self._required <= given.keys():
                    return {name: given[name] for name in self._names if name in given}
        return dict(self.signature.bind(*args, **kwargs).arguments)
