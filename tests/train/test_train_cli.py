import pytest
import torch

from unetlab.cli import main
from unetlab.train.tasks import make_task


def test_bad_data_and_method_give_one_line_errors(tmp_path, capsys):
    assert main(["train", "t2i", "--data", "digits", "--out", str(tmp_path / "r")]) == 2
    assert "data: t2i trains on captioned data" in capsys.readouterr().err
    assert main(["train", "ddpm", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="method"):
        make_task("vdm", "digits")
    with pytest.raises(ValueError, match="data"):
        make_task("ddpm", "cifar")


def test_folder_data_builds_a_ddpm_task_of_its_size(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    task = make_task("ddpm", str(tmp_path / "imgs"), size=16)
    assert len(task.dataset) == 3 and task.unet.config.sample_size == 16 and task.unet.config.in_channels == 3


def test_prediction_type_and_init_from_reach_the_task_or_fail_in_one_line(tmp_path, capsys):
    task = make_task("ddpm", "digits", prediction_type="v_prediction")
    assert task.scheduler.config.prediction_type == "v_prediction"
    assert make_task("t2i", "shapes", prediction_type="v_prediction").scheduler.config.prediction_type == "v_prediction"
    assert (
        main(["train", "vdm", "--data", "digits", "--out", str(tmp_path / "r"), "--prediction-type", "v_prediction"])
        == 2
    )
    assert "--prediction-type is not an option of vdm (only of ddpm, t2i)" in capsys.readouterr().err
    assert (
        main(
            ["train", "ddpm", "--data", "digits", "--out", str(tmp_path / "r"), "--steps", "1", "--init-from", "shapes"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "init_from: " in err[0]
        and "holds a UNet2DConditionModel; the task trains a UNet2DModel" in err[0]
    )


def _refusal(parser, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_every_option_of_another_method_is_refused_naming_it(capsys):
    from unetlab.cli import build_parser
    from unetlab.commands.train_methods import METHODS

    parser = build_parser()
    flags = {f for m in METHODS.values() for o in m.loop + m.own for f in o.flags}
    for name, method in METHODS.items():
        own = {f for o in method.loop + method.own for f in o.flags}
        for flag in sorted(flags - own):
            err = _refusal(parser, ["train", name, "--out", "x", flag, "1"], capsys)
            assert err.startswith(f"unetlab train {name}: error: {flag} is not an option of {name} (only of "), err
    assert _refusal(parser, ["train", "ddpm", "--out", "x", "--teacher", "x", "--clock", "3"], capsys) == (
        "unetlab train ddpm: error: --teacher is not an option of ddpm (only of codi); --clock is not an option of "
        "ddpm (only of clockwork) (see unetlab train ddpm --help)"
    )


def test_the_run_identity_holds_only_the_methods_own_options():
    from unetlab.cli import build_parser
    from unetlab.commands.train import run_identity
    from unetlab.commands.train_methods import METHODS

    parser = build_parser()
    for name, method in METHODS.items():
        identity = run_identity(parser.parse_args(["train", name, "--out", "x"]))
        assert set(identity) == {"command", *(o.dest for o in method.own)}, name
    assert run_identity(parser.parse_args(["train", "ddpm", "--out", "x", "--data", "digits", "--seed", "3"])) == {
        "command": "train ddpm",
        "data": "digits",
        "size": None,
        "prediction_type": "epsilon",
    }
    assert set(run_identity(parser.parse_args(["train", "clockwork", "--out", "x"]))) == {
        "command",
        "model",
        "level",
        "clock",
        "trajectories",
        "trajectory_steps",
        "guidance_scale",
        "adaptor_channels",
        "prompts",
    }


def test_a_run_stores_its_own_options_and_resumes_comparing_only_them(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    argv = [
        "train",
        "ddpm",
        "--data",
        "digits",
        "--size",
        "8",
        "--warmup",
        "0",
        "--sample-steps",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(run),
    ]
    assert main([*argv, "--steps", "1"]) == 0
    state_file = run / "checkpoint-0000001" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["config"]["run"] == {
        "command": "train ddpm",
        "data": "digits",
        "size": 8,
        "prediction_type": "epsilon",
    }
    # as a run stored before each method had its own options: every method's options, with their defaults
    state["config"]["run"].update(clock=2, teacher="digits", encoder="trainable", vae=None, parameterization="v")
    state_file.write_text(json.dumps(state))
    assert main([*argv, "--prediction-type", "v_prediction", "--steps", "2", "--resume"]) == 2
    assert "resume: prediction-type differs from the stored run" in capsys.readouterr().err
    assert main([*argv, "--steps", "2", "--resume"]) == 0
    assert (run / "latest").read_text().strip() == "checkpoint-0000002"
    stored = json.loads((run / "checkpoint-0000002" / "state.json").read_text())["config"]["run"]
    assert stored == {"command": "train ddpm", "data": "digits", "size": 8, "prediction_type": "epsilon"}


def test_one_dataset_helper_names_digits_shapes_and_folders(tmp_path):
    from unetlab.data import dataset

    assert dataset("digits", "test", 8)[torch.arange(2)]["images"].shape == (2, 1, 8, 8)
    assert dataset("shapes", "train", 24, seed=1)[torch.arange(1)]["images"].shape == (1, 3, 24, 24)
    with pytest.raises(FileNotFoundError, match="data: folder .*missing does not exist"):
        dataset(str(tmp_path / "missing"), "train", 16)
    with pytest.raises(ValueError, match="data: 'cifar' is not digits, shapes or an existing image folder"):
        dataset("cifar", "train", 16)


def test_codi_with_a_grid_of_fewer_points_than_its_sample_steps_trains_and_samples(tmp_path):
    argv = ["train", "codi", "--grid-size", "2", "--steps", "1", "--batch-size", "2", "--checkpoint-every", "1"]
    assert main([*argv, "--no-progress", "--threads", "1", "--out", str(tmp_path / "r")]) == 0
    checkpoint = tmp_path / "r" / (tmp_path / "r" / "latest").read_text().strip()
    assert list(checkpoint.glob("*.png"))  # the sample grid, 2 consistency steps


def test_likelihood_widths_are_even_where_the_model_uses_them():
    from unetlab.likelihood.build import LikelihoodConfig, build_model

    with pytest.raises(ValueError, match="channels: 3 must be even"):
        LikelihoodConfig(channels=3)
    with pytest.raises(ValueError, match="encoder_channels: 5 must be even"):
        LikelihoodConfig(method="diffenc", encoder_channels=5)
    build_model(LikelihoodConfig(method="diffenc", encoder="nt", encoder_channels=5, channels=2, blocks=1))  # unused


def test_eval_bpd_names_data_the_model_cannot_read_and_takes_a_checkpoint_folder(tmp_path, capsys):
    run = tmp_path / "vdm"
    small = ["--channels", "8", "--blocks", "1", "--batch-size", "2", "--sample-steps", "1", "--no-progress"]
    assert main(["train", "vdm", "--data", "digits", "--steps", "1", "--out", str(run), *small]) == 0
    capsys.readouterr()
    assert main(["eval", "bpd", str(run), "--data", "shapes"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"unetlab eval: error: data: shapes has 3-channel images; the model in {run} was trained on 1-channel "
        "images (give the data it was trained on)"
    )
    checkpoint = run / (run / "latest").read_text().strip()
    assert main(["eval", "bpd", str(checkpoint), "--json", str(tmp_path / "c.json")]) == 0
    assert "VDMv on digits test (359 images x 1)" in capsys.readouterr().out
