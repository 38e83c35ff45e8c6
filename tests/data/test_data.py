from collections import Counter

import pytest
import torch

from unetlab.data import (
    DigitsDataset,
    ShapesDataset,
    caption,
    heldout_captions,
    load_digits,
    load_folder,
    parse_caption,
    shapes,
)


def test_digits_split_is_fixed_disjoint_and_upsampled():
    x_train, _ = load_digits("train", 16)
    x_test, y_test = load_digits("test", 16)
    assert x_train.shape == (1438, 1, 16, 16) and x_test.shape == (359, 1, 16, 16)
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) <= 1.0
    again, _ = load_digits("train", 16)
    assert torch.equal(x_train, again)
    # the two splits partition the 1,797 originals (compared as 8x8 images, with multiplicity)
    from sklearn.datasets import load_digits as sk_load_digits

    def rows(x):
        return Counter(tuple(r) for r in x.flatten(1).mul(16).round().int().tolist())

    full = rows(torch.from_numpy(sk_load_digits().images).float() / 16)
    assert rows(load_digits("train", 8)[0]) + rows(load_digits("test", 8)[0]) == full
    assert set(y_test.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="split"):
        load_digits("val")


def test_digits_dataset_batches():
    ds = DigitsDataset("test")
    batch = ds[torch.tensor([3, 1])]
    assert torch.equal(batch["images"][1], ds.images[1]) and batch["labels"].tolist() == ds.labels[[3, 1]].tolist()


def test_shapes_are_a_pure_function_of_seed_and_index():
    a = ShapesDataset("train", 24, seed=0)[torch.tensor([5, 7, 5])]
    b = ShapesDataset("train", 24, seed=0)[torch.tensor([7, 5])]
    assert torch.equal(a["images"][0], a["images"][2]) and torch.equal(a["images"][:2].flip(0), b["images"])
    assert a["captions"][1] == b["captions"][0]
    c = ShapesDataset("train", 24, seed=1)[torch.tensor([5])]
    assert not torch.equal(a["images"][0], c["images"][0])
    assert a["images"].shape == (3, 3, 24, 24) and 0 <= float(a["images"].min()) and float(a["images"].max()) <= 1


def test_shape_colour_and_background_are_rendered():
    batch = ShapesDataset("train", 24)[torch.arange(20)]
    palette = torch.tensor(list(shapes.COLOURS.values()))
    for img, attrs in zip(batch["images"], batch["attributes"]):
        corner_far = img[:, 0, 0] if attrs[2] in (5, 7, 8) else img[:, -1, -1]
        assert torch.allclose(corner_far, palette[attrs[3]])  # background colour
        row, col = int(attrs[2]) // 3, int(attrs[2]) % 3
        cell = img[:, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8].flatten(1)
        assert (cell - palette[attrs[1]].view(3, 1)).abs().sum(0).min() < 1e-5  # shape colour inside its cell


def test_caption_round_trip_over_all_combinations():
    for row in shapes.all_combinations():
        attrs = {k: shapes.ATTRIBUTES[k][int(v)] for k, v in zip(shapes.ATTRIBUTES, row)}
        assert parse_caption(caption(**attrs)) == attrs
    assert caption("circle", "red", "top left", "blue") == "a red circle at the top left on a blue background"
    with pytest.raises(ValueError, match="caption"):
        parse_caption("a red hexagon at the top on a blue background")
    with pytest.raises(ValueError, match="caption"):
        parse_caption("red circle")


def test_heldout_combinations_never_appear_in_training():
    held = {tuple(r.tolist()) for r in shapes.split_combinations("heldout")}
    train = {tuple(r.tolist()) for r in shapes.split_combinations("train")}
    assert held and not held & train and len(held) + len(train) == len(shapes.all_combinations())
    caps = heldout_captions(50, seed=3)
    assert caps == heldout_captions(50, seed=3)
    for c in caps:
        a = parse_caption(c)
        idx = tuple(shapes.ATTRIBUTES[k].index(a[k]) for k in shapes.ATTRIBUTES)
        assert idx in held
    # every attribute value is still seen in training
    for i, values in enumerate(shapes.ATTRIBUTES.values()):
        assert {r[i] for r in train} == set(range(len(values)))


def test_folder_errors_and_loading(tmp_path):
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nope", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_folder(tmp_path / "empty", 16)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*x.png"):
        load_folder(bad, 16)
    good = tmp_path / "good"
    good.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(good / "a.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(good / "b.jpg")
    images = load_folder(good, 8)
    assert images.shape == (2, 3, 8, 8)
    assert torch.allclose(images[0, :, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    assert load_folder(good, 8, channels=1).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        load_folder(good, 8, channels=2)
