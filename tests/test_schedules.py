"""Key-step specs: the paper's sets, uniform, adaptive, explicit lists, JSON files, and their errors."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetlab import schedules
from unetlab.schedules import KeySteps, KeyStepsError, check_spec, resolve


def test_paper_sets():
    assert resolve("paper", 50) == (0, 1, 2, 3, 5, 10, 15, 25, 35)  # 9 key, 41 non-key
    assert resolve("sd", 20) == (0, 1, 2, 3, 5, 10, 15)  # the paper's DPM-Solver-20 set
    assert resolve("dreambooth", 50) == (0, 1, 2, 3, 5, 10, 15, 25, 35, 40)
    stage1 = resolve("if_stage1", 100)
    assert stage1 == tuple(i for i in range(100) if i > 85 or i < 10 or i % 5 == 0)
    assert len(stage1) == 10 + 14 + 16 and 11 not in stage1 and 15 in stage1 and 87 in stage1
    assert resolve("if_stage3", 75) == (0, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65)
    assert resolve("if_stage2", 30) == resolve("all", 30) == tuple(range(30))
    assert resolve("community", 10) == (0, 4, 8)
    assert resolve("uniform:3", 10) == (0, 3, 6, 9) and resolve("uniform:1", 4) == (0, 1, 2, 3)


def test_adaptive_reproduces_the_paper_at_50_and_front_loads_elsewhere():
    assert resolve("adaptive", 50) == resolve("paper", 50)
    assert resolve("adaptive", 20) == (0, 1, 2, 3, 4, 6, 10, 14)
    assert resolve("adaptive", 100) == (0, 1, 2, 3, 4, 6, 10, 20, 30, 50, 70)


@given(st.integers(1, 2000))
def test_adaptive_is_valid_for_any_step_count(n):
    keys = resolve("adaptive", n)
    assert keys == tuple(sorted(set(keys))) and keys[0] == 0 and keys[-1] < n
    assert keys[:4] == tuple(range(min(4, n)))  # the first steps are always key
    assert len(keys) <= 12  # the 9 scaled positions plus steps 1-3: the key count does not grow with n


def _expected_error(steps, n):
    """The oracle: None if `steps` is a valid explicit spec for n steps, else a fragment of the error."""
    if not steps:
        return "empty"
    if any(not isinstance(s, int) or isinstance(s, bool) for s in steps):
        return "must be ints"
    if len(set(steps)) != len(steps):
        return "duplicate"
    if list(steps) != sorted(steps):
        return "sorted"
    if steps[0] != 0:
        return "step 0"
    if steps[-1] >= n:
        return "out of range"
    return None


@pytest.mark.parametrize(
    "spec, n, fragment",
    [
        ([], 10, "empty"),
        ([0, 2, 1], 10, "sorted"),
        ([0, 1, 1], 10, "duplicate"),
        ([0, 1.0], 10, "must be ints"),
        ([0, "3"], 10, "must be ints"),
        ([0, True], 10, "must be ints"),
        ([1, 2], 10, "step 0"),
        ([0, 10], 10, "out of range"),
        ("nonsense", 10, "unknown spec"),
        ("uniform:0", 10, "positive integer"),
        ("uniform:x", 10, "positive integer"),
        ("uniform:", 10, "positive integer"),
        ("paper", 60, "up to 50 steps"),
        (3, 10, "expected a name"),
        (None, 10, "expected a name"),
    ],
)
def test_invalid_specs_raise_one_line_errors(spec, n, fragment):
    with pytest.raises(KeyStepsError, match=fragment) as err:
        resolve(spec, n)
    assert str(err.value).startswith("key_steps:") and "\n" not in str(err.value)


def test_malformed_specs_fail_before_the_call_and_range_at_the_call():
    check_spec([0, 40])  # the form is fine; the range needs the call's step count
    with pytest.raises(KeyStepsError, match="out of range"):
        resolve([0, 40], 20)
    with pytest.raises(KeyStepsError, match="sorted"):
        check_spec([0, 5, 3])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 40), st.floats(0, 5), st.booleans()), max_size=8), st.integers(1, 40))
def test_random_lists_raise_exactly_when_invalid(steps, n):
    expected = _expected_error(steps, n)
    if expected is None:
        assert resolve(steps, n) == tuple(steps)
    else:
        with pytest.raises(KeyStepsError, match=expected):
            resolve(steps, n)


@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(1, n - 1) if n > 1 else st.nothing()))
    )
)
def test_random_valid_lists_resolve_to_themselves(case):
    n, rest = case
    keys = [0, *sorted(rest)]
    assert resolve(keys, n) == tuple(keys)


def test_json_round_trip(tmp_path):
    path = tmp_path / "keys.json"
    KeySteps(20, (0, 1, 4, 9), source="derived from a trace").save(path)
    data = json.loads(path.read_text())
    assert data == {"kind": "key_steps", "num_steps": 20, "key_steps": [0, 1, 4, 9], "source": "derived from a trace"}
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # written atomically, no tmp file left
    assert resolve(path, 20) == resolve(str(path), 20) == (0, 1, 4, 9)
    assert KeySteps.load(path) == KeySteps(20, (0, 1, 4, 9))
    with pytest.raises(KeyStepsError, match="made for 20 steps, the call has 25"):
        resolve(path, 25)


def test_bad_json_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "something else"}')
    with pytest.raises(KeyStepsError, match="not a key-step schedule"):
        check_spec(bad)
    bad.write_text('{"kind": "key_steps", "num_steps": 10, "key_steps": [0, 12]}')
    with pytest.raises(KeyStepsError, match="out of range"):
        KeySteps.load(bad)
    with pytest.raises(KeyStepsError, match="cannot read"):
        check_spec(Path(tmp_path / "missing.json"))
    bad.write_text("{not json")
    with pytest.raises(KeyStepsError, match="cannot read"):
        resolve(str(bad), 10)


def test_names_are_documented():
    for name in schedules.NAMES:
        assert f'"{name}"' in schedules.__doc__
