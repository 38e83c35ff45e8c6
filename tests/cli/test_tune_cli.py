"""`unetlab tune` with bad input: exit 2, one line on stderr naming the argument, no traceback, nothing written."""

import pytest
from test_bad_input import _tree

from unetlab.bench.budget import lpips_available
from unetlab.cli import main

TUNE = ["tune", "--model", "{pipe}", "--budget", "psnr>=35", "--out", "{tmp}/r.json", "--no-progress"]


def _with(*extra, drop=()):
    argv = [a for a in TUNE]
    for flag in drop:
        i = argv.index(flag)
        del argv[i : i + 2]
    return argv + list(extra)


CASES = [
    ("no-budget", _with(drop=["--budget"]), "required: --budget"),
    ("no-out", _with(drop=["--out"]), "required: --out"),
    ("budget-syntax", _with("--budget", "psnr>35"), "budget: expected METRIC>=VALUE or METRIC<=VALUE"),
    ("budget-metric", _with("--budget", "fid<=3"), "budget: unknown metric 'fid'; valid for this model: psnr, ssim"),
    ("budget-direction", _with("--budget", "psnr<=35"), "budget: psnr is bounded below; write psnr>=35"),
    (
        "budget-accuracy-no-classifier",
        _with("--budget", "accuracy>=0.99"),
        "budget: accuracy needs a shipped evaluation classifier",
    ),
    (
        "budget-accuracy-range",
        ["tune", "--model", "digits", "--budget", "accuracy>=2", "--out", "{tmp}/r.json"],
        "budget: accuracy must be in [0, 1]",
    ),
    *(
        []
        if lpips_available()
        else [
            (
                "budget-lpips",
                _with("--budget", "lpips<=0.1"),
                "budget: lpips needs torchmetrics' LPIPS with torchvision",
            )
        ]
    ),
    ("steps-1", _with("--steps", "1"), "argument --steps: expected an integer >= 2"),
    ("time-limit-0", _with("--time-limit", "0"), "argument --time-limit: expected a duration > 0"),
    ("time-limit-word", _with("--time-limit", "soon"), "argument --time-limit: expected a duration such as"),
    ("time-limit-negative", _with("--time-limit", "-5"), "argument --time-limit: expected a duration > 0"),
    ("scheduler", _with("--scheduler", "fastest"), "--scheduler: 'fastest' is not one of ddim"),
    ("solvers", _with("--solvers", "dpm++,fastest"), "--solvers: 'fastest' is not one of ddim, dpm++"),
    ("calibration-0", _with("--calibration-images", "0"), "argument --calibration-images: expected an integer >= 1"),
    ("validation-0", _with("--validation-images", "0"), "argument --validation-images"),
    ("out-folder", _with("--out", "{tmp}/empty_out"), "--out: {tmp}/empty_out is a folder; give a file name"),
    ("out-not-json", _with("--out", "{tmp}/recipe.txt"), "--out: expected a .json file name"),
    ("model-missing", _with("--model", "{tmp}/no/such/model"), "no such folder"),
]


@pytest.mark.parametrize("argv, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_tune_bad_input(argv, text, files, tmp_path, capsys):
    argv = [a.format(**files) for a in argv]
    before = _tree(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err + out, err
    assert lines[0].startswith("unetlab tune: error: ") and text.format(**files) in lines[0], lines[0]
    assert _tree(tmp_path) == before


def test_tune_refuses_several_processes(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = [a.format(**files) for a in TUNE]
    before = _tree(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetlab tune: error: tune: runs as one process") and "\n" not in err
    assert _tree(tmp_path) == before
