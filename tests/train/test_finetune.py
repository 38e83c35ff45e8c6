"""v-prediction targets and fine-tuning from a saved pipeline (`init_from`)."""

import pytest
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file
from tiny import cfg, final_weights, tiny_task

from unetlab import checkpoint as ckpt
from unetlab.train import train
from unetlab.train.init import init_from
from unetlab.train.target import target, training_scheduler


def test_v_target_is_what_ddim_reads_back_as_x0():
    """Feeding the exact v of (x0, eps, t) to DDIM's step must give pred_original_sample == x0 (Salimans & Ho 2022)."""
    scheduler = training_scheduler("v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1, torch.randn(2, 3, 4, 4, generator=g)
    ddim = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    ddim.set_timesteps(20)
    for t in ddim.timesteps[[0, 7, 19]]:
        tt = torch.full((2,), int(t))
        x_t = scheduler.add_noise(x0, eps, tt)
        v = target(scheduler, x0, eps, tt)
        abar = scheduler.alphas_cumprod[int(t)]
        torch.testing.assert_close(v, abar.sqrt() * eps - (1 - abar).sqrt() * x0)
        out = ddim.step(v, t, x_t)
        torch.testing.assert_close(out.pred_original_sample, x0, atol=1e-5, rtol=1e-5)
    assert target(training_scheduler(), x0, eps, torch.zeros(2, dtype=torch.long)) is eps


def test_prediction_type_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^prediction_type: 'sample' is not one of epsilon, v_prediction$"):
        training_scheduler("sample")


def test_v_prediction_task_saves_a_pipeline_that_samples_with_v(tmp_path):
    task = tiny_task()
    task.scheduler = training_scheduler("v_prediction")
    train(task, cfg(tmp_path / "v", steps=3))
    pipe_dir = ckpt.latest(tmp_path / "v") / "pipeline"
    assert DDIMScheduler.from_pretrained(pipe_dir / "scheduler").config.prediction_type == "v_prediction"


def test_init_from_loads_the_pipeline_weights_and_a_checkpoint_wins_on_resume(tmp_path):
    train(tiny_task(), cfg(tmp_path / "base", steps=3))
    source = ckpt.latest(tmp_path / "base") / "pipeline"
    saved = load_file(source / "unet" / "diffusion_pytorch_model.safetensors")
    task = tiny_task()
    init_from(task.modules(), source)
    for key, value in task.unet.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # fine-tuning, killed and resumed, equals an uninterrupted fine-tune: the checkpoint, not init_from, is restored
    train(tiny_task(), cfg(tmp_path / "a", init_from=str(source)))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_task(fail_at_loss=5), cfg(tmp_path / "b", init_from=str(source)))
    train(tiny_task(), cfg(tmp_path / "b", init_from=str(source), resume=True))
    (wa, _), (wb, _) = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train(tiny_task(), cfg(tmp_path / "scratch"))
    assert not torch.equal(final_weights(tmp_path / "scratch")[0]["conv_in.weight"], wa["conv_in.weight"])


def test_init_from_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^init_from: .*nowhere is neither a shipped model"):
        init_from(tiny_task().modules(), tmp_path / "nowhere")
    train(tiny_task(), cfg(tmp_path / "base", steps=3))
    source = ckpt.latest(tmp_path / "base") / "pipeline"
    wide = tiny_task()
    wide.unet = type(wide.unet)(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    with pytest.raises(ValueError, match=r"^init_from: .* does not fit the task's unet: \d+ tensors differ"):
        init_from(wide.modules(), source)
    with pytest.raises(ValueError, match=r"^init_from: .* has no 'text_encoder' component"):
        init_from({"text_encoder": wide.unet}, source)


def test_init_from_loads_a_transformers_component(tmp_path):
    """A text encoder's config names its class under `architectures` (transformers), not `_class_name`."""
    from transformers import CLIPTextConfig, CLIPTextModel

    def encoder(seed):
        torch.manual_seed(seed)
        return CLIPTextModel(
            CLIPTextConfig(
                hidden_size=8,
                intermediate_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                vocab_size=20,
                max_position_embeddings=8,
            )
        )

    encoder(0).save_pretrained(tmp_path / "pipe" / "text_encoder")
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    target_encoder = encoder(1)
    init_from({"text_encoder": target_encoder}, tmp_path / "pipe")
    assert all(torch.equal(v, encoder(0).state_dict()[k]) for k, v in target_encoder.state_dict().items())
