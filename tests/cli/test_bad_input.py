"""Every command with bad input: the exit code, one line on stderr naming the argument, no traceback, and
nothing left behind (no output folder, no temporary file, no change to an existing run)."""

import re

import pytest

from helpers.cli_cases import CASES
from unetlab.cli import main


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv, code, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(argv, code, text, files, saved, tmp_path, capsys):
    argv = [a.format(**files) for a in argv]
    before, run_before = _tree(tmp_path), _tree(saved["run"])
    assert main(argv) == code
    out, err = capsys.readouterr()
    # progress bars of a model that loaded before the error are not part of the message
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not re.search(r"\d+%\|", line)]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert lines[0].startswith("unetlab") and "error: " in lines[0], lines[0]
    assert text.format(**files) in lines[0], lines[0]
    assert _tree(tmp_path) == before  # nothing created, nothing left half-written
    assert _tree(saved["run"]) == run_before


def test_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
