"""VDM/DiffEnc on the shared training loop: an interrupted and resumed run ends with the same parameters."""

import pytest
import torch
from safetensors.torch import load_file

from unetlab.data import DigitsDataset
from unetlab.likelihood import LikelihoodConfig, LikelihoodTask, load_model
from unetlab.train import TrainConfig, train
from unetlab.vdm import evaluate_bpd, images_to_x

MODEL = {
    "method": "diffenc",
    "encoder": "trainable",
    "channels": 8,
    "blocks": 1,
    "encoder_channels": 8,
    "encoder_blocks": 1,
}


class Interrupt(Exception):
    pass


class StopAfter(LikelihoodTask):
    """Raises on loss call number ``calls + 1``: a crash after the checkpoint of step ``calls``."""

    def __init__(self, *args, calls: int, **kw):
        super().__init__(*args, **kw)
        self.calls = calls

    def loss(self, models, batch, generator):
        if self.calls == 0:
            raise Interrupt
        self.calls -= 1
        return super().loss(models, batch, generator)


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset("train", 8)


def run(tmp, digits, task, resume=False):
    cfg = TrainConfig(
        out=str(tmp),
        steps=4,
        batch_size=8,
        lr=1e-2,
        warmup=1,
        checkpoint_every=2,
        seed=3,
        resume=resume,
        progress=False,
    )
    return train(task, cfg)


def test_resume_gives_same_parameters_as_uninterrupted(tmp_path, digits):
    cfg = LikelihoodConfig(**MODEL)
    run(tmp_path / "straight", digits, LikelihoodTask(cfg, digits, num_samples=2, sample_steps=2))
    with pytest.raises(Interrupt):
        run(tmp_path / "cut", digits, StopAfter(cfg, digits, num_samples=2, sample_steps=2, calls=3))
    state = run(tmp_path / "cut", digits, LikelihoodTask(cfg, digits, num_samples=2, sample_steps=2), resume=True)
    assert state["step"] == 4
    for name in ("model", "ema_model"):
        a = load_file(tmp_path / "straight" / "checkpoint-0000004" / f"{name}.safetensors")
        b = load_file(tmp_path / "cut" / "checkpoint-0000004" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # the trainable encoder moved away from its zero initialisation, and the saved EMA model scores like the live one
    final = load_file(tmp_path / "straight" / "checkpoint-0000004" / "model.safetensors")
    assert float(final["encoder.y_net.conv_out.weight"].abs().sum()) > 0
    model, loaded_cfg = load_model(tmp_path / "straight" / "checkpoint-0000004" / "pipeline")
    assert loaded_cfg == cfg
    x = images_to_x(digits[torch.arange(16)]["images"])
    ema = load_file(tmp_path / "straight" / "checkpoint-0000004" / "ema_model.safetensors")
    assert all(torch.equal(model.state_dict()[k], ema[k]) for k in ema)
    bpd = evaluate_bpd(model, x, torch.Generator().manual_seed(0))
    assert 0 < bpd["total"] < 20


def test_checkpoints_record_the_held_out_bound_of_the_saved_model(tmp_path, digits):
    held_out = DigitsDataset("test", 8)
    cfg = LikelihoodConfig(**MODEL)
    state = run(tmp_path, digits, LikelihoodTask(cfg, digits, num_samples=2, sample_steps=2, eval_dataset=held_out))
    assert [h["step"] for h in state["history"]] == [2, 4]
    model, _ = load_model(tmp_path / "checkpoint-0000004" / "pipeline")
    x = images_to_x(held_out[torch.arange(len(held_out))]["images"])
    expected = evaluate_bpd(model, x, torch.Generator().manual_seed(0))
    assert state["history"][-1]["eval_total"] == expected["total"]
    assert state["history"][-1]["eval_prior"] == expected["prior"]


def test_eval_bpd_reports_the_mean_and_the_spread_of_its_passes(tmp_path, digits):
    """`unetlab eval bpd --repeats 3`: the mean of three passes with one generator, and their standard error."""
    import json
    import math

    from unetlab.cli import main

    cfg = LikelihoodConfig(**MODEL)
    run(tmp_path / "run", digits, LikelihoodTask(cfg, digits, num_samples=2, sample_steps=2))
    assert (
        main(
            [
                "eval",
                "bpd",
                str(tmp_path / "run"),
                "--repeats",
                "3",
                "--seed",
                "5",
                "--json",
                str(tmp_path / "bpd.json"),
            ]
        )
        == 0
    )
    got = json.loads((tmp_path / "bpd.json").read_text())
    model, _ = load_model(tmp_path / "run" / "checkpoint-0000004" / "pipeline")
    held_out = DigitsDataset("test", 8)
    x = images_to_x(held_out[torch.arange(len(held_out))]["images"])
    generator = torch.Generator().manual_seed(5)
    totals = torch.tensor([evaluate_bpd(model.eval(), x, generator)["total"] for _ in range(3)], dtype=torch.float64)
    assert got["repeats"] == 3
    assert math.isclose(got["total"], float(totals.mean()), rel_tol=1e-12)
    assert math.isclose(got["total_mc_stderr"], float(totals.std() / math.sqrt(3)), rel_tol=1e-9)
    assert got["total_mc_stderr"] > 0


def test_tracked_bound_with_several_passes_is_their_mean_and_one_pass_is_unchanged(tmp_path, digits):
    """`--track-repeats 3`: each curve point is the mean of passes with seeds 0, 1, 2; pass 0 alone is the default."""
    import math

    held_out = DigitsDataset("test", 8)
    cfg = LikelihoodConfig(**MODEL)
    state = run(
        tmp_path,
        digits,
        LikelihoodTask(cfg, digits, num_samples=2, sample_steps=2, eval_dataset=held_out, eval_repeats=3),
    )
    model, _ = load_model(tmp_path / "checkpoint-0000004" / "pipeline")
    x = images_to_x(held_out[torch.arange(len(held_out))]["images"])
    passes = [evaluate_bpd(model.eval(), x, torch.Generator().manual_seed(r)) for r in range(3)]
    totals = torch.tensor([p["total"] for p in passes], dtype=torch.float64)
    got = state["history"][-1]
    assert math.isclose(got["eval_total"], float(totals.mean()), rel_tol=1e-12)
    assert math.isclose(got["eval_diffusion"], sum(p["diffusion"] for p in passes) / 3, rel_tol=1e-12)
    assert math.isclose(got["eval_total_mc_stderr"], float(totals.std() / math.sqrt(3)), rel_tol=1e-9)
    assert "eval_total_stderr" not in got and len(set(totals.tolist())) == 3
    single = LikelihoodTask(cfg, digits, eval_dataset=held_out).evaluate({"model": model})
    assert single["eval_total"] == passes[0]["total"] and single["eval_total_stderr"] == passes[0]["total_stderr"]


def test_track_repeats_below_one_is_refused():
    with pytest.raises(ValueError, match="eval_repeats: 0 must be >= 1"):
        LikelihoodTask(LikelihoodConfig(**MODEL), DigitsDataset("train", 8), eval_repeats=0)
