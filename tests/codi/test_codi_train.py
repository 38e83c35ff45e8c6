import pytest
import torch
from safetensors.torch import load_file

from helpers.codi_tiny import tiny_task
from unetlab import checkpoint as ckpt
from unetlab.train import TrainConfig, train


def _cfg(out, **kw):
    base = dict(out=str(out), steps=4, batch_size=4, lr=1e-2, warmup=1, checkpoint_every=2, progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(out, name):
    last = ckpt.latest(out)
    return load_file(last / f"{name}.safetensors"), load_file(last / f"ema_{name}.safetensors")


@pytest.mark.parametrize("variant, task", [("codi", "sr4"), ("pe-codi", "inpaint"), ("controlnet", "sr4")])
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, variant, task):
    train(tiny_task(variant, task), _cfg(tmp_path / "a"))
    killed = tiny_task(variant, task)
    calls = {"n": 0}
    loss = killed.loss

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return loss(*args)

    killed.loss = dying
    with pytest.raises(KeyboardInterrupt):
        train(killed, _cfg(tmp_path / "b"))
    assert ckpt.latest(tmp_path / "b").name == "checkpoint-0000002"
    train(tiny_task(variant, task), _cfg(tmp_path / "b", resume=True))
    name, prefix = ("student", "adapter.") if variant == "codi" else ("adapter", "")
    (wa, ea), (wb, eb) = _weights(tmp_path / "a", name), _weights(tmp_path / "b", name)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
        assert torch.equal(ea[key], eb[key]), key
    # training moved the weights (so the equality can fail)
    start = tiny_task(variant, task).adapter.state_dict()
    assert not torch.equal(wa[prefix + "mid_zero_conv.weight"], start["mid_zero_conv.weight"])
    assert (ckpt.latest(tmp_path / "a") / "pipeline" / "model_index.json").is_file()


def test_pe_codi_leaves_the_teacher_untouched_and_codi_moves_its_copy(tmp_path):
    task = tiny_task("pe-codi")
    before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    train(task, _cfg(tmp_path / "pe"))
    for key, value in task.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    saved = load_file(ckpt.latest(tmp_path / "pe") / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(saved[k], before[k]) for k in before)
    codi = tiny_task("codi")
    train(codi, _cfg(tmp_path / "codi"))
    assert all(torch.equal(v, before[k]) for k, v in codi.teacher.state_dict().items())
    moved = _weights(tmp_path / "codi", "student")[0]
    assert any(not torch.equal(moved["unet." + k], before[k]) for k in before)


def test_codi_student_fine_tunes_from_a_saved_codi_pipeline(tmp_path):
    from unetlab.train.init import init_from

    task = tiny_task("codi")
    student = task.modules()["student"]
    with torch.no_grad():
        student.adapter.mid_zero_conv.weight.fill_(0.25)
        student.unet.conv_in.weight.mul_(2)
    task.save(task.modules(), tmp_path / "p")
    fresh = tiny_task("codi").modules()
    init_from(fresh, tmp_path / "p")  # the student's adapter and UNet, from the pipeline's adapter and unet
    loaded, saved = fresh["student"].state_dict(), student.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
