"""CoDi (UNet trained through the split forward) refuses several processes instead of training unsynchronised."""

from unetlab.cli import main


def test_codi_variant_refuses_several_processes(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["train", "codi", "--teacher", "digits", "--task", "sr4", "--variant", "codi",
                 "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "runs in one process only" in err[0]
    assert not (tmp_path / "run").exists()
