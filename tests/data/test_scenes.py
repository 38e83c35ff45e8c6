"""`unetlab.data.scenes`: deterministic per seed, composition held out of train, captions from the grammar."""

import pytest
import torch

from unetlab.data import scenes


def test_deterministic_per_seed_and_split():
    a, ca, la = scenes.sample(6, seed=3)
    b, cb, lb = scenes.sample(6, seed=3)
    assert torch.equal(a, b) and ca == cb and la == lb
    c, cc, _ = scenes.sample(6, seed=4)
    assert not torch.equal(a, c) and ca != cc
    t, ct, _ = scenes.sample(6, seed=3, split="test")
    assert ct != ca


def test_a_scene_does_not_depend_on_its_batch():
    images, captions, _ = scenes.sample(5, seed=1)
    one, cap, _ = scenes.scenes([3], seed=1)
    assert torch.equal(one[0], images[3]) and cap[0] == captions[3]


def test_images_labels_and_captions_agree():
    images, captions, labels = scenes.sample(40, seed=0)
    assert images.shape == (40, 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    for caption, label in zip(captions, labels):
        objects = label["objects"]
        assert 1 <= len(objects) <= 3 and len({o["cell"] for o in objects}) == len(objects)
        for o in objects:
            assert f"{o['size']} {o['colour']} {o['shape']}" in caption
            assert o["colour"] != label["background"]["colour"]
        assert caption.endswith(f"{label['background']['colour']} {label['background']['texture']} background")
        if len(objects) == 1:
            assert f"at the {scenes.CELLS[objects[0]['cell']]} on" in caption
        else:
            assert label["relation"] in scenes._relation(objects[0]["cell"], objects[1]["cell"])
        assert set(caption.split()) <= set(scenes.vocabulary())


def test_an_object_is_drawn_in_its_colour_in_its_cell():
    _, _, labels = scenes.sample(30, seed=2)
    images = scenes.render(
        labels,
        [[{"dx": 0, "dy": 0, "scale": 1, "angle": 0}] * 3 for _ in labels],
        [{"period": 9.0, "phase": 0.0}] * len(labels),
    )
    for image, label in zip(images, labels):
        for o in label["objects"]:
            if o["shape"] == "ring":  # its centre is background
                continue
            r, c = divmod(o["cell"], 3)
            cy, cx = int((r + 0.5) * 64 / 3), int((c + 0.5) * 64 / 3)
            assert torch.allclose(image[:, cy, cx], torch.tensor(scenes.COLOURS[o["colour"]]), atol=1e-6)


def test_the_test_split_holds_combinations_never_drawn_in_train():
    held = scenes.heldout_triples()
    assert len(held) == round(0.1 * 8 * 8 * 7)
    _, _, train = scenes.sample(400, seed=0, split="train")
    _, _, test = scenes.sample(200, seed=0, split="test")

    def triples(label):
        return {(o["shape"], o["colour"], label["background"]["colour"]) for o in label["objects"]}

    assert all(not (triples(lab) & held) for lab in train)
    assert all(triples(lab) & held for lab in test)


def test_grammar_covers_the_attributes():
    words = set(scenes.vocabulary())
    for group in (scenes.SHAPES, scenes.COLOUR_NAMES, scenes.SIZES, scenes.TEXTURES):
        assert set(group) <= words
    assert len(scenes.SHAPES) >= 8 and len(scenes.COLOURS) >= 8 and len(scenes.TEXTURES) >= 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n: 0 must be a positive int"),
        ({"n": -3}, "n: -3 must be a positive int"),
        ({"n": 2.0}, "n: 2.0 must be a positive int"),
        ({"n": 2, "seed": -1}, "seed: -1 must be a non-negative int"),
        ({"n": 2, "split": "val"}, "split: 'val' is not one of train, test"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        scenes.sample(**kwargs)
    assert "\n" not in str(err.value)


def test_captions_outside_the_grammar_are_named():
    caption = scenes.sample(1)[1][0]
    assert scenes.check_caption(caption) == caption
    with pytest.raises(
        ValueError,
        match="prompt: 'a big zebra on a red plain background' uses words outside mini-sd's caption grammar: zebra",
    ) as err:
        scenes.check_caption("a big zebra on a red plain background")
    assert "\n" not in str(err.value)


def test_parse_caption_inverts_caption():
    _, captions, labels = scenes.sample(60, seed=7, split="test")
    for text, label in zip(captions, labels):
        stated = scenes.parse_caption(text)
        assert stated["background"] == label["background"]
        assert [(o["shape"], o["colour"], o["size"]) for o in stated["objects"]] == [
            (o["shape"], o["colour"], o["size"]) for o in label["objects"]
        ]
        if len(label["objects"]) == 1:
            assert stated["objects"][0]["cell"] == label["objects"][0]["cell"]
        else:
            assert stated["relation"] == label["relation"]
    for bad, message in (
        ("a red star", "does not follow mini-sd's caption grammar"),
        ("a big red red at the top on a green plain background", "'red' is not a shape"),
        ("a big red star at the left left on a green plain background", "the position in"),
        ("a big red star at the top on a green big background", "the background of"),
    ):
        with pytest.raises(ValueError, match=message):
            scenes.parse_caption(bad)
