"""GenEval-style scores of the mini-sd judge (`unetlab.eval.judge`): each stated attribute, the count, position or
relation, the background, "all correct" — checked on hand-made readings."""

import pytest
import torch

from unetlab.eval.judge import frechet, score_scene, score_scenes
from unetlab.metrics import perceptual
from unetlab.models.judge import SceneJudge, cell_crops, head_classes, targets

BG = {"colour": "green", "texture": "striped"}


def obj(shape, colour, size, cell):
    return {"shape": shape, "colour": colour, "size": size, "cell": cell}


def test_one_object_needs_its_cell_and_every_attribute():
    stated = {"objects": [obj("star", "red", "big", 0)], "background": BG}
    assert score_scene(stated, stated)["all_correct"]
    moved = {"objects": [obj("star", "red", "big", 4)], "background": BG}
    row = score_scene(stated, moved)
    assert not row["position"] and row["shape"] and not row["all_correct"]
    extra = {"objects": [obj("star", "red", "big", 0), obj("ring", "blue", "small", 8)], "background": BG}
    row = score_scene(stated, extra)
    assert not row["count"] and row["shape"] and row["position"] and not row["all_correct"]
    wrong_bg = {"objects": stated["objects"], "background": {"colour": "green", "texture": "plain"}}
    assert score_scene(stated, wrong_bg) == {**score_scene(stated, stated), "texture": False, "all_correct": False}


def test_two_objects_match_in_any_order_and_check_the_relation():
    stated = {
        "objects": [obj("star", "red", "big", 3), obj("ring", "blue", "small", 5)],
        "background": BG,
        "relation": "left of",
    }
    seen = {"objects": [obj("ring", "blue", "small", 1), obj("star", "red", "big", 0)], "background": BG}
    assert score_scene(stated, seen)["all_correct"]  # star (col 0) left of ring (col 1), wherever they are
    swapped = {"objects": [obj("ring", "blue", "small", 0), obj("star", "red", "big", 2)], "background": BG}
    row = score_scene(stated, swapped)
    assert row["shape"] and row["colour"] and not row["relation"] and not row["all_correct"]
    recoloured = {"objects": [obj("star", "blue", "big", 0), obj("ring", "blue", "small", 2)], "background": BG}
    row = score_scene(stated, recoloured)
    assert not row["colour"] and row["shape"] and row["size"] and row["relation"]
    missing = {"objects": [obj("star", "red", "big", 0)], "background": BG}
    row = score_scene(stated, missing)
    assert not row["count"] and not row["shape"] and not row["relation"]


def test_rates_and_standard_error():
    stated = [{"objects": [obj("star", "red", "big", 0)], "background": BG}] * 4
    seen = stated[:3] + [{"objects": [], "background": BG}]
    rates = score_scenes(stated, seen)
    assert rates["all_correct"] == 0.75 and rates["all_correct_1obj"] == 0.75
    assert rates["all_correct_se"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)
    with pytest.raises(ValueError, match="labels: 4 stated and 3 read scenes"):
        score_scenes(stated, seen[:3])


def test_frechet_and_perceptual_distances():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64)
    mu, sigma = a.mean(0), torch.cov(a.T)
    assert frechet(a, (mu, sigma)) == pytest.approx(0.0, abs=1e-9)
    assert frechet(a, (mu + 1, sigma)) == pytest.approx(5.0, rel=1e-9)  # ||mu_1 - mu_2||^2 = 5
    assert perceptual(a, a) == 0.0
    assert perceptual(a, -a) == pytest.approx(2.0)


def test_the_judge_reads_cells_in_order_and_its_targets_agree():
    images = torch.zeros(1, 3, 64, 64)
    images[0, :, 0:4, 0:4] = 1  # top-left corner: inside cell 0's crop only
    crops = cell_crops(images)
    assert crops.shape == (1, 9, 3, 32, 32) and crops[0, 0].max() == 1 and crops[0, 1:].max() == 0
    labels = [{"objects": [obj("heart", "purple", "small", 7)], "background": BG}]
    t = targets(labels)
    assert t["cell7.shape"].tolist() == [head_classes()["cell7.shape"].index("heart")]
    assert t["cell0.shape"].tolist() == [0] and t["cell0.colour"].tolist() == [-100]
    judge = SceneJudge(width=8, cell_dim=8).eval()
    seen, feats = judge.read(torch.rand(3, 3, 64, 64))
    assert len(seen) == 3 and feats.shape == (3, 80)
    with pytest.raises(ValueError, match=r"images: shape \(3, 3, 32, 32\) is not \(N, 3, 64, 64\)"):
        judge.read(torch.rand(3, 3, 32, 32))


def test_judge_loss_is_finite_when_a_cell_is_empty_in_every_image():
    from unetlab.train.judge import JudgeTask

    task = JudgeTask(seed=0, width=8, eval_scenes=1)
    batch = task.dataset[torch.arange(2)]
    assert (batch["target:cell0.colour"] == -100).all() or (batch["target:cell1.colour"] == -100).all()
    loss = task.loss(task.modules(), batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
