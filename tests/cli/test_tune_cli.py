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
    (
        "budget-syntax",
        _with("--budget", "psnr>35"),
        "budget: expected METRIC>=VALUE, METRIC<=VALUE or METRIC>=FACTOR*base",
    ),
    ("budget-base-typo", _with("--budget", "fd<=1.1*bas"), "budget: expected METRIC>=VALUE, METRIC<=VALUE or"),
    (
        "budget-relative-no-judge",
        _with("--budget", "allcorrect>=0.98*base"),
        "budget: allcorrect needs a shipped judge (digits, shapes, mini-sd); valid for this model: psnr, ssim",
    ),
    ("budget-fd-no-judge", _with("--budget", "fd<=1.1*base"), "budget: fd needs a shipped judge"),
    (
        "budget-relative-psnr",
        _with("--budget", "psnr>=0.9*base"),
        "budget: psnr is measured against the baseline's own",
    ),
    (
        "budget-allcorrect-digits",
        ["tune", "--model", "digits", "--budget", "allcorrect>=0.98*base", "--out", "{tmp}/r.json"],
        "budget: allcorrect needs a judge that reads the prompt (shapes, mini-sd); the digits judge reads none",
    ),
    (
        "budget-fd-one-image",
        ["tune", "--model", "mini-sd", "--budget", "fd<=1.1*base", "--validation-images", "1", "--out", "{tmp}/r.json"],
        "--validation-images: a fd budget needs at least 2 images",
    ),
    ("budget-metric", _with("--budget", "fid<=3"), "budget: unknown metric 'fid'; valid for this model: psnr, ssim"),
    ("budget-direction", _with("--budget", "psnr<=35"), "budget: psnr is bounded below; write psnr>=35"),
    (
        "budget-accuracy-no-classifier",
        _with("--budget", "accuracy>=0.99"),
        "budget: accuracy needs a shipped judge",
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


def _one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # not the loading bars
    assert len(lines) == 1 and "Traceback" not in err + out, err
    return lines[0]


SIBLINGS = [
    (
        "plot-is-a-folder",
        lambda t: (t / "r.png").mkdir(),
        "--out: {tmp}/r.png (the plot next to the recipe) is a folder",
    ),
    (
        "work-folder-is-a-file",
        lambda t: (t / "r.tune").write_text("x"),
        "--out: {tmp}/r.tune (the work folder next to the recipe) is a file",
    ),
    (
        "truncated-state",
        lambda t: ((t / "r.tune").mkdir(), (t / "r.tune" / "state.json").write_text('{"settings": {')),
        "--out: {tmp}/r.tune/state.json is not valid JSON",
    ),
]


@pytest.mark.parametrize("make, text", [c[1:] for c in SIBLINGS], ids=[c[0] for c in SIBLINGS])
def test_the_outs_siblings_are_checked_before_any_work(make, text, files, tmp_path, capsys, monkeypatch):
    from unetlab.bench import workload

    monkeypatch.setattr(workload, "workload_for", lambda *a, **k: pytest.fail("the model was loaded"))
    make(tmp_path)
    before = _tree(tmp_path)
    assert main([a.format(**files) for a in TUNE]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("unetlab tune: error: ") and text.format(**files) in line, line
    assert _tree(tmp_path) == before


def test_a_time_limit_that_ends_before_anything_is_measured_says_so(files, tmp_path, capsys):
    argv = _with("--time-limit", "0.01", "--steps", "2", "--solvers", "none")
    argv += ["--calibration-images", "2", "--validation-images", "2"]
    assert main([a.format(**files) for a in argv]) == 1
    line = _one_line_error(capsys)
    assert line.startswith("unetlab tune: error: tune: the time limit (0.01 s) ran out before any configuration was ")
    assert "nan" not in line and "best so far" not in line
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.png").exists()


def test_the_recipe_is_written_before_the_plot(files, tmp_path, capsys, monkeypatch):
    """A plot that cannot be written after the search loses nothing: the recipe is on disk, the error names the
    plot (exit 1)."""
    from unetlab.bench import tune_report, tuner
    from unetlab.bench.budget import parse_budget
    from unetlab.recipes import Recipe

    tuned_on = {
        "speedup_wall": 2.0,
        "speedup_wall_min": 1.9,
        "speedup_wall_max": 2.1,
        "speedup_flops": 2.0,
        "validation": {"psnr": 36.0},
        "validation_seeds": [1200, 1201],
    }
    recipe = Recipe(10, "DDIMScheduler", (), tuned_on)
    row = {"name": "10 steps", "family": "steps", "key": "k", "speedup_predicted": 2.0, "speedup_flops": 2.0}
    row |= {"calibration": 36.0, "validation": 36.0, "speedup_wall": 2.0, "chosen": True}
    result = tuner.TuneResult(recipe, parse_budget("psnr>=35"), [row], [row], 1.0, tmp_path / "r.tune", {"name": "10"})

    def no_plot(result, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuner, "tune", lambda *a, **k: result)
    monkeypatch.setattr(tune_report, "plot", no_plot)
    assert main([a.format(**files) for a in TUNE]) == 1
    line = _one_line_error(capsys)
    assert line == (
        f"unetlab tune: error: --out: the plot {tmp_path}/r.png was not written ([Errno 28] No space left on "
        f"device); the recipe is at {tmp_path}/r.json"
    )
    assert Recipe.load(tmp_path / "r.json") == recipe
