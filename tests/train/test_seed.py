"""`--seed` fixes the initial weights of every training task; a different seed changes them."""

import torch

from unetlab.train.classifier import ClassifierTask
from unetlab.train.tasks import make_task


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ddpm_t2i_and_classifier_init_weights_follow_the_seed():
    torch.manual_seed(123)  # whatever the global state before, the seed decides
    a = make_task("ddpm", "digits", 8, seed=0).unet
    torch.manual_seed(456)
    assert _same(a, make_task("ddpm", "digits", 8, seed=0).unet)
    assert not _same(a, make_task("ddpm", "digits", 8, seed=1).unet)
    t0, t1 = make_task("t2i", "shapes", 12, seed=0), make_task("t2i", "shapes", 12, seed=0)
    assert _same(t0.unet, t1.unet) and _same(t0.text_encoder, t1.text_encoder)
    torch.manual_seed(7)
    c = ClassifierTask("digits", seed=0).model
    assert _same(c, ClassifierTask("digits", seed=0).model)
    assert not _same(c, ClassifierTask("digits", seed=1).model)


def test_two_seed_0_runs_of_eval_classifier_are_equal(tmp_path):
    from safetensors.torch import load_file

    from unetlab.cli import main

    weights = {}
    for name, seed in (("a", "0"), ("b", "0")):
        out = tmp_path / name
        assert (
            main(
                ["eval", "classifier", "digits", "--out", str(out), "--steps", "2", "--batch-size", "8", "--seed", seed]
            )
            == 0
        )
        weights[name] = {
            f"{f.name}:{k}": v
            for f in sorted((out / "classifier").glob("*.safetensors"))
            for k, v in load_file(f).items()
        }
    assert weights["a"].keys() == weights["b"].keys()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])  # seed 1: see the test above
