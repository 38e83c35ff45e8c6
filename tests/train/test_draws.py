"""Step draws: a loss over a batch equals the mean of the losses over its halves, each half keeping its rows of
the step's draws, which is what lets N processes with batch B train like one process with batch N*B."""

import pytest
import torch
from tiny import tiny_task

from unetlab.train.classifier import ClassifierTask
from unetlab.train.draws import DRAWS, step_draws


def _halves_equal_whole(task, models, batch, n):
    g = torch.Generator().manual_seed(0)  # not used for these draws: any state gives the same losses
    whole = task.loss(models, {**batch(slice(0, n)), DRAWS: step_draws(3, 7, 0, n, n)}, g)
    h = n // 2
    parts = [
        task.loss(models, {**batch(slice(a, b)), DRAWS: step_draws(3, 7, a, b, n)}, torch.Generator().manual_seed(9))
        for a, b in ((0, h), (h, n))
    ]
    # float32 means over a different grouping of the same terms
    assert float(whole) == pytest.approx(float(sum(parts) / 2), rel=1e-5)
    for seed, step in ((4, 7), (3, 8)):  # the run's seed and the step decide the draws
        other = task.loss(models, {**batch(slice(0, n)), DRAWS: step_draws(seed, step, 0, n, n)}, g)
        assert float(other) != pytest.approx(float(whole), rel=1e-3)


def test_ddpm_loss_is_the_mean_of_its_halves():
    task = tiny_task()
    data = task.dataset.images
    with torch.no_grad():
        _halves_equal_whole(task, task.modules(), lambda s: {"images": data[s]}, 8)


def test_classifier_augmentation_follows_the_rows():
    task = ClassifierTask("digits", seed=0)
    batch = task.dataset[torch.arange(8)]
    with torch.no_grad():
        _halves_equal_whole(task, task.modules(), lambda s: {k: v[s] for k, v in batch.items()}, 8)


def test_step_seeds_are_distinct_within_a_run_and_32_bit():
    seeds = {step_draws(5, s, 0, 1, 1).seed for s in range(10_000)}
    assert len(seeds) == 10_000 and max(seeds) < 2**32
