"""Failures while running: exit 1 in one line (2 for bad input), --debug shows the traceback, an interrupted or
failed run removes the folder it created unless a checkpoint in it can be resumed."""

import subprocess
import sys

import pytest

from unetlab import cli
from unetlab.commands import info
from unetlab.train import ddpm

TRAIN = [
    "train",
    "ddpm",
    "--data",
    "digits",
    "--size",
    "8",
    "--steps",
    "3",
    "--checkpoint-every",
    "1",
    "--sample-steps",
    "1",
    "--no-progress",
]


def _fail_at(monkeypatch, n, exc):
    loss, calls = ddpm.DDPMTask.loss, [0]

    def failing(self, *a):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return loss(self, *a)

    monkeypatch.setattr(ddpm.DDPMTask, "loss", failing)


def test_runtime_failure_exits_1_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(info, "run", lambda args: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "unetlab info: error: OSError: [Errno 28] No space left on device"


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(info, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "info"])
    with pytest.raises(ZeroDivisionError):
        cli.main(["info", "--debug"])


def test_failed_fresh_run_leaves_no_folder(monkeypatch, tmp_path, capsys):
    _fail_at(monkeypatch, 1, RuntimeError("loss went NaN"))
    assert cli.main([*TRAIN, "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.strip() == "unetlab train: error: loss went NaN"
    assert list(tmp_path.iterdir()) == []


def test_interrupt_before_a_checkpoint_leaves_nothing_after_one_keeps_the_run(monkeypatch, tmp_path, capsys):
    _fail_at(monkeypatch, 1, KeyboardInterrupt())
    assert cli.main([*TRAIN, "--out", str(tmp_path / "a")]) == 130
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "a").exists()
    _fail_at(monkeypatch, 3, KeyboardInterrupt())
    assert cli.main([*TRAIN, "--out", str(tmp_path / "b")]) == 130
    out = tmp_path / "b"
    assert (out / "latest").read_text().strip() == "checkpoint-0000002" and not list(out.glob(".tmp-*"))


@pytest.mark.slow  # spawns a process
def test_bad_input_from_the_shell_exits_2_without_traceback(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetlab.cli",
            "train",
            "ddpm",
            "--data",
            "digits",
            "--out",
            str(tmp_path / "r"),
            "--size",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "unetlab train ddpm: error: argument --size: expected an integer >= 1, got '0' (see unetlab train ddpm --help)"
    ]
    assert not (tmp_path / "r").exists()


def test_library_calls_refuse_zero_instead_of_substituting_a_default():
    from unetlab.bench.quality import measure_quality
    from unetlab.train.tasks import make_task

    with pytest.raises(ValueError, match="num_samples: expected a positive integer, got 0"):
        measure_quality("digits", "digits", num_samples=0)
    with pytest.raises(ValueError, match="size: 0 does not fit"):
        make_task("ddpm", "digits", size=0)


def test_a_launch_that_got_one_process_of_several_is_named(monkeypatch, capsys):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(info, "run", lambda args: 0)
    assert cli.main(["info"]) == 0
    assert "warning: accelerate launch started one process" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().err == ""
