import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from helpers.codi_tiny import adapter_for, tiny_task, tiny_unet
from unetlab.codi import adapted_unet
from unetlab.unet import example_inputs


@pytest.mark.parametrize("family", ["ddpm", "ddpm_skip", "ddpm_fourier", "sd", "sdxl", "if_stage1", "if_stage2"])
def test_adapted_model_equals_the_teacher_bit_for_bit_at_init(family):
    unet = tiny_unet(family)
    adapter = adapter_for(unet, channels=2, size=4)
    x, cond = example_inputs(unet, 2, None, seq_len=5, generator=torch.Generator().manual_seed(1))
    condition = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([3, 800])
    with torch.no_grad():
        ref = unet(x, t, **cond).sample
        out = adapted_unet(unet, adapter, x, t, condition, **cond)
        down, mid = adapter(x, t, condition, **cond)
    assert torch.equal(out, ref)
    assert all(torch.count_nonzero(r) == 0 for r in [*down, mid])
    # the adapter's encoder copies the teacher's weights exactly, and is a separate copy
    teacher = unet.state_dict()
    for key, value in adapter.encoder.state_dict().items():
        assert torch.equal(value, teacher[key]), key
        assert value.data_ptr() != teacher[key].data_ptr()
    if isinstance(unet, UNet2DConditionModel):
        return
    # a nonzero residual path changes the output (the comparison above can fail)
    with torch.no_grad():
        adapter.mid_zero_conv.bias.fill_(0.5)
        assert not torch.equal(adapted_unet(unet, adapter, x, t, condition, **cond), ref)


@pytest.mark.parametrize("variant", ["pe-codi", "codi"])
def test_both_variants_start_at_the_teacher_and_zero_convs_get_gradients(variant):
    task = tiny_task(variant)
    models = task.modules()
    if variant == "codi":  # one module, adapter + the trainable UNet copy, so that DDP synchronises both
        assert list(models) == ["student"]
        unet, adapter = models["student"].unet, models["student"].adapter
    else:
        assert list(models) == ["adapter"]
        unet, adapter = task.teacher, models["adapter"]
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    condition = torch.rand(3, 1, 2, 2)
    t = torch.tensor([0, 400, 999])
    for key, value in task.teacher.state_dict().items():
        assert torch.equal(unet.state_dict()[key], value), key
    # on CPU, nn.Linear takes another kernel when its weight requires grad (ULP differences in attention's to_q),
    # so the teacher is compared with the same autograd flags as the student's UNet
    teacher = copy.deepcopy(task.teacher).requires_grad_(unet is not task.teacher)
    with torch.no_grad():
        assert torch.equal(adapted_unet(unet, adapter, x, t, condition), teacher(x, t).sample)
        if variant == "codi":
            assert torch.equal(models["student"](x, t, condition), teacher(x, t).sample)
    adapted_unet(unet, adapter, x, t, condition).square().mean().backward()
    for conv in [*adapter.zero_convs, adapter.mid_zero_conv]:
        assert conv.weight.grad.abs().sum() > 0
    # behind the zero convs nothing moves at init (ControlNet's property); after one step the embedding learns
    last = adapter.condition_embedding[-1]
    assert last.weight.grad is None or last.weight.grad.abs().sum() == 0
    torch.optim.SGD(adapter.parameters(), lr=0.1).step()
    adapter.zero_grad()
    adapted_unet(unet, adapter, x, t, condition).square().mean().backward()
    assert last.weight.grad.abs().sum() > 0
    if variant == "codi":
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in unet.parameters())
    assert all(not p.requires_grad for p in task.teacher.parameters())


def test_adapter_rejects_unknown_class():
    with pytest.raises(ValueError, match="unet_class"):
        from unetlab.codi import CoDiAdapter

        CoDiAdapter("UNet1DModel", {})


@pytest.mark.parametrize("name", ["text2video", "animatediff"])
def test_video_unets_take_the_adapter_too(name):
    from compat.pipelines import build

    unet = build(name)[0].unet
    adapter = adapter_for(unet, channels=2, size=4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)  # (batch, channels, frames, height, width)
    ehs = torch.randn(2 * 3 if name == "animatediff" else 2, 5, 16, generator=g)
    condition = torch.rand(2, 2, 4, 4, generator=g)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ehs).sample
        assert torch.equal(adapted_unet(unet, adapter, x, t, condition, encoder_hidden_states=ehs), ref)
        adapter.mid_zero_conv.bias.fill_(0.5)
        adapter.zero_convs[0].bias.fill_(0.5)
        assert not torch.equal(adapted_unet(unet, adapter, x, t, condition, encoder_hidden_states=ehs), ref)
    # the condition reaches every frame's skip through the stem (its embedding is live once the last conv moves)
    with torch.no_grad():
        adapter.condition_embedding[-1].weight.normal_(generator=g)
        adapter.zero_convs[0].weight.normal_(generator=g)
        down, _ = adapter(x, t, condition, encoder_hidden_states=ehs)
        other, _ = adapter(x, t, 1 - condition, encoder_hidden_states=ehs)
    assert down[0].shape[0] == 2 * 3
    assert all(not torch.equal(down[0][i], other[0][i]) for i in range(6))
