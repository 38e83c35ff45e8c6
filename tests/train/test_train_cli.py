import pytest

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
    assert main(["train", "vdm", "--data", "digits", "--out", str(tmp_path / "r"),
                 "--prediction-type", "v_prediction"]) == 2
    assert "prediction-type: vdm trains its own parameterisation" in capsys.readouterr().err
    assert main(["train", "ddpm", "--data", "digits", "--out", str(tmp_path / "r"), "--steps", "1",
                 "--init-from", "shapes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init_from: " in err[0] and "holds a UNet2DConditionModel; the task trains a UNet2DModel" in err[0]
