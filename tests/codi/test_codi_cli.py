"""`unetlab train codi` and `unetlab eval codi` end to end on the shipped digits teacher (two steps)."""

import json

from unetlab.cli import main


def test_train_then_eval_codi(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "codi",
                "--teacher",
                "digits",
                "--task",
                "inpaint",
                "--variant",
                "pe-codi",
                "--out",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--checkpoint-every",
                "2",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (run / "checkpoint-0000002" / "pipeline" / "adapter" / "config.json").is_file()
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "codi",
                "--task",
                "inpaint",
                "--run",
                f"tiny={run}",
                "--steps",
                "1",
                "--seeds",
                "0,1",
                "--limit",
                "6",
                "--grid-examples",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = json.loads((out / "inpaint.json").read_text())
    row = table["rows"][0]
    assert row["steps"] == 1 and row["training"]["steps"] == 2 and table["test_images"] == 6
    assert set(row["metrics"]) >= {"psnr", "ssim", "consistency_psnr", "accuracy", "frechet", "seconds_per_image"}
    assert (out / "inpaint-grid.png").is_file() and "| tiny | consistency | 1 |" in (out / "inpaint.md").read_text()


def test_codi_errors_are_one_line(capsys):
    assert main(["train", "codi", "--data", "shapes", "--out", "x"]) == 2
    assert "data: codi trains on digits or scenes" in capsys.readouterr().err
    assert main(["train", "ddpm", "--out", "x"]) == 2
    assert "data: --data is required for ddpm" in capsys.readouterr().err
    assert main(["eval", "codi", "--task", "sr4", "--run", "nolabel", "--out", "x"]) == 2
    assert "run: 'nolabel' is not LABEL=PATH" in capsys.readouterr().err
