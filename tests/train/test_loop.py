import json

import pytest
import torch
from tiny import cfg, final_weights, tiny_task

from unetlab import checkpoint as ckpt
from unetlab.train import TrainConfig, batch_indices, learning_rate, train


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    train(tiny_task(), cfg(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_task(fail_at_loss=5), cfg(tmp_path / "b"))  # killed during step 5: steps 4-5 lost
    assert ckpt.latest(tmp_path / "b").name == "checkpoint-0000003"
    state = train(tiny_task(), cfg(tmp_path / "b", resume=True))
    assert state["step"] == 6
    (wa, ea), (wb, eb) = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
        assert torch.equal(ea[key], eb[key]), key
    sa = json.loads((ckpt.latest(tmp_path / "a") / "state.json").read_text())
    sb = json.loads((ckpt.latest(tmp_path / "b") / "state.json").read_text())
    assert sa["history"][-1]["loss"] == sb["history"][-1]["loss"]
    # a different seed gives different weights (the comparison above can fail)
    train(tiny_task(), cfg(tmp_path / "c", seed=2))
    assert not torch.equal(final_weights(tmp_path / "c")[0]["conv_in.weight"], wa["conv_in.weight"])


def test_checkpoint_is_atomic_and_complete(tmp_path):
    out = tmp_path / "run"
    train(tiny_task(), cfg(out, steps=3))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_task(fail_in_save=True), cfg(out, steps=6, resume=True))
    # the partial checkpoint of step 6 never became visible; `latest` still names the complete step-3 one
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0000003"]
    assert ckpt.latest(out).name == "checkpoint-0000003"
    assert list(out.glob(".tmp-*"))  # the killed write's leftovers ...
    train(tiny_task(), cfg(out, steps=6, resume=True))
    assert not list(out.glob(".tmp-*"))  # ... are cleaned by the next run
    last = ckpt.latest(out)
    for name in (
        "unet.safetensors",
        "ema_unet.safetensors",
        "optimizer.pt",
        "generators.safetensors",
        "state.json",
        "samples.png",
        "pipeline/model_index.json",
        "pipeline/unet/diffusion_pytorch_model.safetensors",
    ):
        assert (last / name).is_file(), name
    assert (out / "samples" / "step_0000006.png").is_file()


def test_resume_without_checkpoint_starts_fresh_and_keep_limits_checkpoints(tmp_path):
    out = tmp_path / "run"
    state = train(tiny_task(), cfg(out, steps=4, checkpoint_every=1, keep=2, resume=True))
    assert state["step"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0000003", "checkpoint-0000004"]


def test_batch_indices_cover_each_epoch_once():
    n, b = 20, 5
    epoch = torch.cat([batch_indices(s, n, b, seed=3) for s in range(4)])
    assert sorted(epoch.tolist()) == list(range(n))
    assert torch.equal(batch_indices(2, n, b, 3), batch_indices(2, n, b, 3))
    assert not torch.equal(torch.cat([batch_indices(s, n, b, 3) for s in range(4, 8)]), epoch)


def test_learning_rate_warmup_and_cosine():
    c = TrainConfig(out="x", steps=110, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(0, c) == pytest.approx(0.1) and learning_rate(9, c) == pytest.approx(1.0)
    assert learning_rate(10, c) == pytest.approx(1.0)
    assert learning_rate(60, c) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(110, c) == pytest.approx(0.1)
    to_zero = TrainConfig(out="x", steps=110, lr=1.0, warmup=10, min_lr_ratio=0.0)
    assert learning_rate(60, to_zero) == pytest.approx(0.5) and learning_rate(110, to_zero) == 0.0


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(out="x", steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(out="x", lr=0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        TrainConfig(out="x", min_lr_ratio=-0.1)
