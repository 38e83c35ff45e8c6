"""`Binder` gives what `inspect.Signature.bind(...).arguments` gives (names, values, parameter order) for every call,
and the same TypeError for a call the forward would refuse."""

import inspect

import pytest
from diffusers import UNet2DConditionModel

from unetlab.accel.binding import Binder
from unetlab.accel.handle import forward_signature
from unetlab.testing import tiny_unet


def forward(sample, timestep, encoder_hidden_states=None, *, return_dict=True, scale=1.0):
    return sample


def variadic(sample, *args, flag=False, **kwargs):
    return sample


def positional_only(sample, /, timestep=0):
    return sample


CALLS = [
    ((1, 2), {}),
    ((1,), {"timestep": 2}),
    ((), {"return_dict": False, "timestep": 2, "sample": 1}),  # keywords out of parameter order
    ((1, 2, 3), {"scale": 0.5, "return_dict": False}),
    ((1, 2), {"encoder_hidden_states": None}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_same_arguments_in_parameter_order(args, kwargs):
    sig = inspect.signature(forward)
    got = Binder(sig)(args, kwargs)
    want = dict(sig.bind(*args, **kwargs).arguments)
    assert list(got.items()) == list(want.items())


@pytest.mark.parametrize("fn", [variadic, positional_only])
def test_other_signatures_bind_as_inspect_does(fn):
    sig = inspect.signature(fn)
    kwargs = {"flag": True, "extra": 3} if fn is variadic else {"timestep": 5}
    args = (1, 2) if fn is variadic else (1,)
    assert list(Binder(sig)(args, kwargs).items()) == list(sig.bind(*args, **kwargs).arguments.items())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {"timestep": 2}), ((1, 2), {"sample": 1}), ((1, 2), {"unknown": 0}), ((1, 2, 3, 4), {})],
)
def test_refused_calls_raise_inspects_error(args, kwargs):
    sig = inspect.signature(forward)
    with pytest.raises(TypeError) as want:
        sig.bind(*args, **kwargs)
    with pytest.raises(TypeError) as got:
        Binder(sig)(args, kwargs)
    assert str(got.value) == str(want.value)


def test_unet_call_as_pipelines_make_it():
    unet = tiny_unet("sd")
    assert isinstance(unet, UNet2DConditionModel)
    sig = forward_signature(unet)
    args, kwargs = ("x", "t"), {"encoder_hidden_states": "e", "return_dict": False, "cross_attention_kwargs": None}
    assert list(Binder(sig)(args, kwargs).items()) == list(sig.bind(*args, **kwargs).arguments.items())
