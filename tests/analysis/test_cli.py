"""`unetlab analyze`: each action writes its JSON, PNG and Markdown; derive consumes them."""

import json

from unetlab.accel.block_skip import BlockSkipPlan
from unetlab.cli import main
from unetlab.schedules import KeySteps


def test_analyze_actions_write_outputs_and_derive_reads_them(tmp_path, capsys):
    common = ["--model", "tiny:ddpm", "--out", str(tmp_path), "--steps", "4", "--seeds", "2"]
    assert main(["analyze", "trace", *common]) == 0
    assert main(["analyze", "ablate", *common, "--windows", "2", "--components", "mid_block,up_blocks.0"]) == 0
    assert main(["analyze", "perturb", *common, "--sigmas", "0.5"]) == 0
    assert main(["analyze", "derive", *common, "--num-keys", "2"]) == 0
    for name in (
        "trace.json",
        "trace_change.png",
        "trace_norms.png",
        "ablation.json",
        "ablation_psnr.png",
        "perturbation.json",
        "perturbation.png",
        "trace_keys.png",
        "deepcache.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    keys = KeySteps.load(tmp_path / "key_steps.json")
    assert keys.num_steps == 4 and len(keys.key_steps) == 2 and keys.key_steps[0] == 0
    plan = BlockSkipPlan.load(tmp_path / "block_skip_plan.json")
    assert plan.num_inference_steps == 4 and plan.meta["measured"]["psnr"] >= 30
    md = (tmp_path / "derive.md").read_text()
    assert "unetlab analyze derive --model tiny:ddpm" in md and "saved" in md
    assert "| mid_block |" in (tmp_path / "ablate.md").read_text()
    grid = json.loads((tmp_path / "ablation.json").read_text())
    assert sorted(grid["cells"]) == ["mid_block@0-2", "mid_block@2-4", "up_blocks.0@0-2", "up_blocks.0@2-4"]


def test_analyze_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", "trace", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["analyze", "derive", "--model", "tiny:ddpm", "--out", str(tmp_path / "empty")]) == 2
    assert "run analyze trace / ablate first" in capsys.readouterr().err
    assert (
        main(
            [
                "analyze",
                "ablate",
                "--model",
                "tiny:ddpm",
                "--out",
                str(tmp_path),
                "--replace",
                "noise",
                "--steps",
                "2",
                "--seeds",
                "1",
            ]
        )
        == 2
    )
    assert "replace" in capsys.readouterr().err


def test_mini_sd_default_prompts_follow_its_grammar_and_bad_ones_are_refused_before_loading(tmp_path, capsys):
    from unetlab.commands.analyze import _default_prompts
    from unetlab.data.scenes import parse_caption

    class TextPipe:
        text_encoder = None

    prompts = _default_prompts(TextPipe(), "mini-sd")
    assert [len(parse_caption(p)["objects"]) for p in prompts] == [1, 2]
    args = ["analyze", "trace", "--model", "mini-sd", "--out", str(tmp_path), "--prompts", "a red circle at the center"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "prompt" in err and "grammar" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "trace.json").exists()
