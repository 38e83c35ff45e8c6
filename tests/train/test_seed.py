"""`--seed` fixes the initial weights of every training task; a different seed changes them."""

import torch

from unetlab.eval.train_classifier import ClassifierTask
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
