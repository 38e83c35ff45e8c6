"""Recipe, config, plan and tune-state files: a truncated or future-version file is refused in one line naming it;
a recipe tuned on another model warns once, naming `tuned_on.model`."""

import json
import warnings

import pytest
import torch

import unetlab
from unetlab.accel import BlockSkipPlan, BranchCacheConfig, SkipWindow, load_config
from unetlab.bench.state import State
from unetlab.models.registry import weights_path
from unetlab.recipes import Recipe, as_recipe
from unetlab.testing import tiny_sd_pipeline

RECIPE = Recipe(4, "DDIMScheduler", (BranchCacheConfig(interval=2),), {"model": "shapes"})


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def _truncate(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return path


@pytest.mark.parametrize("kind", ["recipe", "config", "plan"])
def test_truncated_files_are_named(tmp_path, kind):
    saved = {"recipe": RECIPE, "config": BranchCacheConfig(), "plan": BlockSkipPlan([SkipWindow("mid_block", 1, 3)])}
    path = _truncate(saved[kind].save(tmp_path / f"{kind}.json"))
    loaders = {
        "recipe": [Recipe.load, as_recipe],
        "config": [load_config, BranchCacheConfig.load],
        "plan": [BlockSkipPlan.load],
    }
    for load in loaders[kind]:
        with pytest.raises(ValueError) as err:
            load(path)
        assert str(path) in _one_line(err) and "is not valid JSON" in str(err.value)


@pytest.mark.parametrize("version", [2, "1", None, True])
def test_an_unknown_version_is_refused_naming_it(tmp_path, version):
    docs = {
        "recipe": (RECIPE.to_dict(), Recipe.from_dict, Recipe.load),
        "config": (BranchCacheConfig().to_dict(), load_config, load_config),
        "plan": (BlockSkipPlan([SkipWindow("mid_block", 1, 3)]).to_dict(), BlockSkipPlan.from_dict, BlockSkipPlan.load),
    }
    for what, (doc, from_dict, load) in docs.items():
        doc = {**doc, "version": version}
        with pytest.raises(ValueError) as err:
            from_dict(doc)
        assert f"{what}: version {version!r} is not supported" in _one_line(err)
        path = tmp_path / f"{what}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError) as err:
            load(path)
        assert f"version {version!r}" in _one_line(err) and str(path) in str(err.value)
    nested = {**RECIPE.to_dict(), "accelerators": [{**BranchCacheConfig().to_dict(), "version": version}]}
    with pytest.raises(ValueError, match=r"recipe: accelerators\[0\]: config: version"):
        Recipe.from_dict(nested)


def test_version_1_and_no_version_still_load():
    assert Recipe.from_dict(RECIPE.to_dict()) == RECIPE
    doc = RECIPE.to_dict()
    del doc["version"]
    assert Recipe.from_dict(doc) == RECIPE


def _provenance_warnings(pipe, recipe) -> list[str]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        unetlab.accelerate(pipe, recipe).remove()
    return [str(w.message) for w in record if "tuned_on" in str(w.message)]


def test_a_recipe_tuned_on_another_model_warns_once_naming_it():
    pipe = unetlab.load("digits")
    for model in ("digits", str(weights_path("digits"))):
        assert _provenance_warnings(pipe, Recipe(4, "DDIMScheduler", (), {"model": model})) == []
    found = _provenance_warnings(pipe, Recipe(4, "DDIMScheduler", (), {"model": "shapes"}))
    assert len(found) == 1 and "recipe: tuned_on.model is 'shapes'" in found[0] and "\n" not in found[0]
    assert _provenance_warnings(tiny_sd_pipeline(), RECIPE) == []  # built in memory: its model cannot be known


def test_tune_state_files_are_named(tmp_path):
    state = State(tmp_path, {"model": "tiny"})
    state.save()
    state.save_reference({1: torch.zeros(2, 3)})
    _truncate(state.path)
    with pytest.raises(ValueError) as err:
        State(tmp_path, {"model": "tiny"})
    assert str(state.path) in _one_line(err) and "is not valid JSON" in str(err.value)
    state.path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a tune state"):
        State(tmp_path, {"model": "tiny"})
    state.save()
    ref = tmp_path / "reference.safetensors"
    ref.write_bytes(ref.read_bytes()[:-4])
    with pytest.raises(ValueError) as err:
        State(tmp_path, {"model": "tiny"}).reference()
    assert str(ref) in _one_line(err) and "not a readable safetensors file" in str(err.value)
