"""One vocabulary per technique: the stacking table lists every accelerator and the module defining it; each config
class carries its kind, family and row label; each public function's arguments are its config's fields (names,
defaults and order)."""

import importlib
import inspect
from dataclasses import MISSING, fields

import pytest

import unetlab
from unetlab.accel import stacking
from unetlab.accel.block_skip import BlockSkipConfig, BlockSkipPlan, SkipWindow
from unetlab.accel.branch_cache import BranchCacheConfig
from unetlab.accel.clockwork import ClockworkConfig
from unetlab.accel.config import _KINDS, AccelConfig
from unetlab.accel.encoder_propagation import EncoderPropagationConfig
from unetlab.accel.guidance_reuse import GuidanceReuseConfig
from unetlab.accel.peers import ToMeConfig
from unetlab.accel.registry import kinds, load_config
from unetlab.bench.rows import FAMILIES
from unetlab.patching import Slots
from unetlab.schedules import KeySteps

EXTRA = {"block_skip": ("scheduler",)}  # function arguments that are not config fields (after the fields)


def _function(kind: str):
    return getattr(importlib.import_module(f"unetlab.accel.{stacking.ACCELERATORS[kind]}"), kind)


def test_the_registry_is_the_stacking_table():
    registry = kinds()
    assert list(registry) == list(stacking.ACCELERATORS)
    assert set(_KINDS) == set(registry)  # no config class outside the table
    assert all(cls.kind == kind and cls.family and cls.family in FAMILIES for kind, cls in registry.items())
    assert {a for pair in stacking.COMPOSE for a in pair} <= set(registry)
    assert all(("encoder_propagation", k) in stacking.COMPOSE for k in stacking.SEQUENTIAL)


@pytest.mark.parametrize("kind", list(stacking.ACCELERATORS))
def test_the_function_takes_its_configs_fields_in_order_with_the_same_defaults(kind):
    params = list(inspect.signature(_function(kind)).parameters.values())[1:]  # after the pipeline or UNet
    got = [(p.name, p.default) for p in params]
    want = [(f.name, inspect.Parameter.empty if f.default is MISSING else f.default) for f in fields(kinds()[kind])]
    assert got == want + [(name, None) for name in EXTRA.get(kind, ())]


@pytest.mark.parametrize("kind", ["encoder_propagation", "branch_cache", "clockwork", "guidance_reuse"])
def test_the_public_function_is_the_documented_one(kind):
    assert getattr(unetlab, kind) is _function(kind)


@pytest.mark.parametrize(
    "cfg, label",
    [
        (EncoderPropagationConfig(noise_injection=None), "EP paper keys, parallel"),
        (EncoderPropagationConfig(noise_injection=None, parallel=False), "EP paper keys, sequential"),
        (
            EncoderPropagationConfig(key_steps="uniform:2", noise_injection=None, reuse="taylor1"),
            "EP uniform:2 taylor1",
        ),
        (EncoderPropagationConfig(key_steps="uniform:2", parallel=False), "EP uniform:2, sequential, noise 0.003"),
        (
            EncoderPropagationConfig(key_steps=KeySteps(10, (0, 5), "trace"), max_parallel=2),
            "EP derived keys, noise 0.003 max_parallel=2",
        ),
        (BranchCacheConfig(interval=2), "branch cache N=2 B=0"),
        (BranchCacheConfig(interval=3, granularity="layer", reuse="taylor2"), "branch cache N=3 layer taylor2"),
        (BranchCacheConfig(branch=1, granularity="layer", schedule=[0, 4]), "branch cache at steps 0,4 layer B=1"),
        (ClockworkConfig(clock=4, reuse="taylor1"), "clockwork clock=4 taylor1"),
        (ClockworkConfig(level=2), "clockwork clock=2 level=2"),
        (GuidanceReuseConfig(interval=3, stop_after=0.5), "guidance reuse N=3 stop after 0.5"),
        (BlockSkipConfig([SkipWindow("up_blocks.0", 0, 2)]), "block skip (1 windows)"),
        (ToMeConfig(ratio=0.5, merge_mlp=True), "tomesd ratio=0.5 merge_mlp=True"),
    ],
)
def test_a_label_names_the_fields_that_are_set(cfg, label):
    assert cfg.label() == label


def test_every_config_has_a_label_and_only_step_bound_configs_refuse_a_step_count():
    for cls in kinds().values():
        assert cls.label is not AccelConfig.label, cls.kind
    with pytest.raises(ValueError, match="the plan was made for 10 steps"):
        BlockSkipConfig(BlockSkipPlan(num_inference_steps=10)).check_steps(8)
    with pytest.raises(ValueError, match="schedule: full step 4 is out of range"):
        BranchCacheConfig(schedule=[0, 4]).check_steps(4)
    with pytest.raises(ValueError):
        EncoderPropagationConfig(key_steps=[0, 9]).check_steps(5)
    ClockworkConfig(clock=3).check_steps(1)


def test_load_config_knows_every_kind_in_the_table():
    for cls in kinds().values():
        assert load_config(cls().to_dict()) == cls()


def test_slots_count_the_calls_of_one_step():
    slots = Slots()
    assert [slots.of(s) for s in (0, 0, 1, 1, 1, 0, 2)] == [0, 1, 0, 1, 2, 0, 0]
