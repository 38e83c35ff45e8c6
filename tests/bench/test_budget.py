"""Budgets: the judges' metrics, absolute or relative to the baseline (`allcorrect>=0.98*base`, `fd<=1.1*base`), with
one-line errors; the Fréchet distance as a set statistic (its jackknife standard error), and mini-sd's scene judge
read image by image."""

import math
import statistics

import pytest
import torch

from unetlab.bench import budget
from unetlab.bench.budget import Budget, Judge, fd, jackknife, parse_budget, per_image
from unetlab.metrics import frechet_gaussian, gaussian_stats


@pytest.mark.parametrize(
    "text, model, expected",
    [
        ("allcorrect>=0.98*base", "mini-sd", Budget("allcorrect", ">=", 0.98, relative=True)),
        ("fd<=1.1*base", "mini-sd", Budget("fd", "<=", 1.1, relative=True)),
        ("fd <= 1.1 * base", "digits", Budget("fd", "<=", 1.1, relative=True)),
        ("psnr>=32", "mini-sd", Budget("psnr", ">=", 32.0)),
        ("allcorrect>=0.9", "shapes", Budget("allcorrect", ">=", 0.9)),
        ("fd<=12.5", "shapes", Budget("fd", "<=", 12.5)),
        ("accuracy>=0.95*base", "digits", Budget("accuracy", ">=", 0.95, relative=True)),
    ],
)
def test_budgets_on_the_judges(text, model, expected):
    b = parse_budget(text, model)
    assert b == expected
    assert parse_budget(str(b), model) == b  # the written form parses back
    assert b.bound(20.0) == (expected.value * 20.0 if expected.relative else expected.value)


@pytest.mark.parametrize(
    "text, model, message",
    [
        ("fd<=1.1*bas", "mini-sd", "budget: expected METRIC>=VALUE, METRIC<=VALUE or METRIC>=FACTOR*base"),
        ("fd<=1.1*", "mini-sd", "budget: expected METRIC>=VALUE"),
        ("allcorrect>=0.98*base", None, "budget: allcorrect needs a shipped judge (digits, shapes, mini-sd); valid "),
        ("fd<=1.1*base", None, "budget: fd needs a shipped judge"),
        ("allcorrect>=0.98", "digits", "budget: allcorrect needs a judge that reads the prompt (shapes, mini-sd)"),
        ("psnr>=0.9*base", "mini-sd", "budget: psnr is measured against the baseline's own sample"),
        ("fd>=1.1*base", "mini-sd", "budget: fd is bounded above; write fd<=1.1*base"),
        ("fd<=0*base", "mini-sd", "budget: the factor of base must be a number > 0, got 0"),
        ("fd<=0", "mini-sd", "budget: fd must be in [0, inf] and > 0, got 0"),
        ("allcorrect>=1.5", "mini-sd", "budget: allcorrect must be in [0, 1]"),
    ],
)
def test_malformed_budgets_are_one_line(text, model, message):
    with pytest.raises(ValueError) as err:
        parse_budget(text, model)
    assert "\n" not in str(err.value) and str(err.value).startswith(message), str(err.value)


def test_a_parsed_budget_is_checked_against_the_model_it_is_used_on():
    b = parse_budget("allcorrect>=0.98*base", "mini-sd")
    assert budget.check_budget(b, "shapes") is b
    with pytest.raises(ValueError, match="^budget: allcorrect needs a shipped judge"):
        budget.check_budget(b, None)


def test_a_set_metric_needs_two_images_per_set():
    b = parse_budget("fd<=1.1*base", "mini-sd")
    budget.check_set_sizes(b, 2, 2)
    budget.check_set_sizes(parse_budget("psnr>=30"), 1, 1)
    with pytest.raises(ValueError, match="^--validation-images: a fd budget needs at least 2 images"):
        budget.check_set_sizes(b, 8, 1, ("--calibration-images", "--validation-images"))


def test_the_jackknife_of_a_mean_is_its_standard_error():
    values = [0.3, 1.7, 2.2, -0.4, 5.0, 1.1]
    expected = statistics.stdev(values) / math.sqrt(len(values))
    assert jackknife(statistics.fmean, values) == pytest.approx(expected, rel=1e-12)
    assert jackknife(statistics.fmean, values[:2]) == math.inf  # a leave-one-out set of 1


def test_fd_is_the_frechet_distance_of_the_set():
    torch.manual_seed(0)
    feats, ref = torch.randn(5, 3), torch.randn(40, 3)
    stats = gaussian_stats(ref)
    assert fd(feats, stats) == frechet_gaussian(*gaussian_stats(feats), *stats)
    assert math.isnan(fd(feats[:1], stats))


def _scene_judge(monkeypatch, seen_as):
    """mini-sd's judge replaced by one that reads every image as the scenes `seen_as` and gives features of the image
    means; counts its loads."""
    from unetlab.eval import mini_sd

    loads = []

    class Fake:
        def read(self, images):
            return [seen_as[i] for i in range(len(images))], images.mean(dim=(2, 3))

    def load_judge():
        loads.append(1)
        return Fake(), {"mu": torch.zeros(3), "sigma": torch.eye(3)}

    monkeypatch.setattr(mini_sd, "load_judge", load_judge)
    return loads


def test_mini_sd_judge_reads_each_image_against_its_caption(monkeypatch):
    from unetlab.data import scenes

    _, captions, seen = scenes.sample(3, seed=5)  # the judge reads the scenes as they were drawn
    seen[1] = {**seen[1], "background": {**seen[1]["background"], "texture": "wrong"}}  # one attribute misread
    loads = _scene_judge(monkeypatch, seen)
    judge = Judge("mini-sd")
    images = torch.rand(3, 3, 8, 8)
    values, feats = per_image(images, images, judge, captions, ["psnr", "accuracy", "allcorrect", "fd"])
    assert values["allcorrect"] == values["accuracy"] == [1.0, 0.0, 1.0]
    assert values["psnr"] == [100.0, 100.0, 100.0] and torch.equal(feats, images.mean(dim=(2, 3)))
    assert judge.reference()[1].shape == (3, 3)
    per_image(images, images, judge, captions, ["accuracy"])
    assert len(loads) == 1  # loaded once per judge, not once per image
    with pytest.raises(ValueError, match="^labels: mini-sd's judge needs one caption per image"):
        judge.read(images, None)


def test_features_are_read_only_for_a_set_metric(monkeypatch):
    from unetlab.eval import scores

    monkeypatch.setattr(scores, "accuracy", lambda model, images, labels: {"confident": float(images.mean() > 0.5)})
    monkeypatch.setattr(scores, "features", lambda model, images: images.flatten(1))
    images = torch.rand(2, 1, 4, 4)
    values, feats = per_image(images, images.flip(0), Judge("digits"), None, ["psnr", "accuracy"])
    assert set(values) == {"psnr", "accuracy"} and feats is None
    values, feats = per_image(images, images, Judge("digits"), None, ["accuracy", "fd"])
    assert values["accuracy"] == [float(images[i].mean() > 0.5) for i in range(2)]
    assert torch.equal(feats, images.flatten(1))
