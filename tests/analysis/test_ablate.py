"""Ablation: empty windows change nothing, 'cached' at its own step changes nothing, cells are resumable."""

import json

import pytest
import torch

import unetlab
from unetlab.accel.block_skip import SkipWindow
from unetlab.analysis import Sampler, ablate, ablated_sample, components_of, make_windows
from unetlab.testing import tiny_unet

STEPS = 5


@pytest.fixture(scope="module")
def sampler():
    return Sampler(tiny_unet("sd"), num_inference_steps=STEPS)


@pytest.fixture(scope="module")
def baseline(sampler):
    return sampler.run(sampler.items([0, 1]))


CASES = [
    (c, r)
    for r in ("zeros", "cached", "mean", "bypass")
    for c in ("down_blocks.1", "mid_block", "up_blocks.2", "skip.3")
    if not (r == "bypass" and c == "skip.3")
]


@pytest.mark.parametrize("component,replace", CASES)
def test_empty_window_is_bit_identical_and_a_full_one_is_not(sampler, baseline, component, replace):
    items = sampler.items([0, 1])
    assert torch.equal(ablated_sample(sampler, items, component, (2, 2), replace), baseline)
    assert not torch.equal(ablated_sample(sampler, items, component, (1, STEPS), replace), baseline)


@pytest.mark.parametrize("component", ["down_blocks.0", "mid_block", "up_blocks.1", "skip.0", "skip.5"])
def test_cached_replacement_at_the_step_it_was_computed_changes_nothing(sampler, baseline, component):
    items = sampler.items([0, 1])
    # A window starting at step 0 has no earlier value: the component runs at step 0 and its own value is reused.
    assert torch.equal(ablated_sample(sampler, items, component, (0, 1), "cached"), baseline)
    assert not torch.equal(ablated_sample(sampler, items, component, (1, 2), "cached"), baseline)


def test_cached_block_ablation_equals_block_skip(sampler):
    items = sampler.items([0, 1])
    ablated = ablated_sample(sampler, items, "up_blocks.1", (2, 4), "cached")
    with unetlab.block_skip(sampler.unet, [SkipWindow("up_blocks.1", 2, 4)], scheduler=sampler.scheduler):
        skipped = sampler.run(items)
    assert torch.equal(ablated, skipped)


def test_grid_metrics_and_resume(tmp_path, sampler):
    unet = sampler.unet
    kwargs = dict(
        components=["mid_block", "skip.2"],
        windows=[(0, 0), (0, 2), (2, 5)],
        replace="zeros",
        seeds=[0, 1],
        num_inference_steps=STEPS,
        out_dir=tmp_path,
        progress=False,
    )
    grid = ablate(unet, **kwargs)
    empty = grid.cell("mid_block", (0, 0))
    assert empty["mse"] == 0.0 and empty["psnr"] == float("inf") and empty["ssim"] == pytest.approx(1.0)
    full = grid.cell("mid_block", (2, 5))
    assert full["mse"] > 0 and full["psnr"] == pytest.approx(-10 * torch.log10(torch.tensor(full["mse"])).item())
    assert len(list((tmp_path / "ablation_cells").glob("*.json"))) == 6
    calls = []
    hook = unet.register_forward_hook(lambda *a: calls.append(1))
    again = ablate(unet, **kwargs)
    hook.remove()
    assert len(calls) == STEPS  # only the baseline run; every cell came from disk
    assert again.cells == grid.cells
    cell = json.loads((tmp_path / "ablation_cells" / "skip.2@2-5.json").read_text())
    assert cell["config"]["replace"] == "zeros"
    loaded = type(grid).load(grid.save(tmp_path / "grid.json"))
    assert loaded.matrix("mse") == grid.matrix("mse")
    bad = tmp_path / "ablation_cells" / "skip.2@2-5.json"
    bad.write_text(bad.read_text()[:10])  # a cell damaged on disk is named, not read as garbage
    with pytest.raises(ValueError) as err:
        ablate(unet, **kwargs)
    assert str(err.value).startswith(f"ablation cell: {bad} is not valid JSON") and "\n" not in str(err.value)


def test_windows_and_components():
    assert make_windows(3, 10) == [(0, 3), (3, 7), (7, 10)]
    assert make_windows([(0, 4), (4, 10)], 10) == [(0, 4), (4, 10)]
    unet = tiny_unet("sd")
    assert components_of(unet) == [
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
        "mid_block",
        "up_blocks.0",
        "up_blocks.1",
        "up_blocks.2",
    ] + [f"skip.{k}" for k in range(6)]


def test_bad_input_is_named(sampler):
    unet = sampler.unet
    with pytest.raises(ValueError, match="windows"):
        make_windows(0, 10)
    with pytest.raises(ValueError, match="windows"):
        make_windows([(0, 5), (4, 10)], 10)
    with pytest.raises(ValueError, match="windows"):
        make_windows([(0, 11)], 10)
    with pytest.raises(ValueError, match="component"):
        ablate(unet, components=["up_blocks.9"], num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="replace"):
        ablate(unet, components=["mid_block"], replace="noise", num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="bypass"):
        ablate(unet, components=["skip.1"], replace="bypass", num_inference_steps=2, progress=False)


def test_model_quality_column_comes_from_unetlab_eval_accuracy(monkeypatch, sampler):
    from unetlab.eval import scores

    seen = []

    def fake_accuracy(model_name, images, labels):
        seen.append((model_name, images.shape[0], labels))
        return {"overall": float(images.mean()), "class_counts": [1, 2]}

    monkeypatch.setattr(scores, "accuracy", fake_accuracy)
    grid = ablate(
        sampler.unet,
        components=["mid_block"],
        windows=1,
        replace="zeros",
        seeds=[0, 1],
        num_inference_steps=STEPS,
        model_name="digits",
        progress=False,
    )
    base = sampler.run(sampler.items([0, 1]))
    assert grid.baseline == {"quality.overall": pytest.approx(float(base.mean()))}
    ablated = ablated_sample(sampler, sampler.items([0, 1]), "mid_block", (0, STEPS), "zeros")
    assert grid.cell("mid_block", (0, STEPS))["quality.overall"] == pytest.approx(float(ablated.mean()))
    assert seen == [("digits", 2, None), ("digits", 2, None)]
