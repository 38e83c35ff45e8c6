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
