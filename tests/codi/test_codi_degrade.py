"""The degradations of the two digits tasks: 4x area-average downsampling, and boxes of a quarter to a half of the
image at random positions, deterministic for a seed and the same however many processes share a batch."""

import pytest
import torch

from unetlab.codi import condition_consistency, degrade, heldout_conditions
from unetlab.codi.degrade import _box_sizes, box_masks, drawn_box_masks
from unetlab.train.draws import Draws, StepDraws


def _images(n=6, size=16, seed=0):
    # multiples of 1/256: sums of 16 of them and their mean are exact in float32
    return torch.randint(0, 257, (n, 1, size, size), generator=torch.Generator().manual_seed(seed)).float() / 256


def test_sr4_is_the_4x4_block_mean():
    x = _images()
    ref = torch.tensor(
        [
            [
                [
                    [
                        sum(float(x[n, 0, 4 * i + a, 4 * j + b]) for a in range(4) for b in range(4)) / 16
                        for j in range(4)
                    ]
                    for i in range(4)
                ]
            ]
            for n in range(len(x))
        ]
    )
    assert torch.equal(degrade("sr4", x), ref)
    assert torch.equal(heldout_conditions("sr4", x), ref)


def _boxes(masks):
    """(h, w, top, left) of each mask, checking it is exactly one filled axis-aligned rectangle."""
    out = []
    for m in masks[:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        top, left, h, w = int(rows[0]), int(cols[0]), len(rows), len(cols)
        box = torch.zeros_like(m)
        box[top : top + h, left : left + w] = 1
        assert torch.equal(m, box)
        out.append((h, w, top, left))
    return out


@pytest.mark.parametrize("source", ["generator", "draws"])
def test_boxes_cover_a_quarter_to_a_half_and_every_size_and_place(source):
    size, n = 8, 1500
    g = torch.Generator().manual_seed(0)
    masks = box_masks(n, size, g) if source == "generator" else drawn_box_masks(n, size, Draws({}, g))
    boxes = _boxes(masks)
    assert all(size * size / 4 <= h * w <= size * size / 2 for h, w, _, _ in boxes)
    assert {(h, w) for h, w, _, _ in boxes} == set(_box_sizes(size))  # 20 sizes, each ~75 times
    assert {top for h, _, top, _ in boxes if h == 2} == set(range(size - 1))  # (2, 8): 7 places
    assert {left for _, w, _, left in boxes if w == 8} == {0}


def test_inpaint_condition_and_determinism():
    x = _images(4)
    cond = heldout_conditions("inpaint", x, seed=5)
    assert torch.equal(cond, heldout_conditions("inpaint", x, seed=5))
    assert not torch.equal(cond, heldout_conditions("inpaint", x, seed=6))
    mask = cond[:, 1:]
    assert torch.equal(cond[:, :1], x * (1 - mask)) and torch.equal(cond, degrade("inpaint", x, masks=mask))
    # condition consistency looks at the known pixels only: the truth, or anything inside the boxes, is consistent
    assert condition_consistency("inpaint", torch.where(mask.bool(), 0.3, x), cond) == pytest.approx(100.0)
    assert condition_consistency("inpaint", (x + 0.1).clamp(0, 1), cond) < 30
    with pytest.raises(ValueError, match="generator"):
        degrade("inpaint", x)


def test_training_boxes_do_not_depend_on_how_the_batch_is_split():
    def masks(start, stop):
        return drawn_box_masks(stop - start, 16, Draws({"draws": StepDraws(1234, start, stop, 6)}, None))

    whole = masks(0, 6)
    assert torch.equal(torch.cat([masks(0, 3), masks(3, 6)]), whole)
    assert torch.equal(torch.cat([masks(0, 2), masks(2, 4), masks(4, 6)]), whole)
    assert len({b for b in _boxes(whole)}) > 1
