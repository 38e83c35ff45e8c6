"""A process that ran commands under a process group destroys the group before the interpreter shuts down: gloo
processes that exit with their group alive can abort then ("terminate called without an active exception")."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # spawns processes

SCRIPT = textwrap.dedent("""
    import atexit, sys
    import torch.distributed as dist
    from unetlab.cli import main

    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
    # registered first, so it runs after unetlab's own exit handler
    atexit.register(lambda: print("group alive at exit:", dist.is_initialized()))
    for argv in (sys.argv[2:], sys.argv[2:]):
        print("exit code", main(argv))
        print("group alive after the command:", dist.is_initialized())
""")


@pytest.mark.parametrize("command", [["info"], ["eval", "bpd", "no-such-run"]], ids=["succeeds", "fails"])
def test_the_process_group_is_destroyed_at_exit_not_before(tmp_path, command):
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "store"), *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    # later commands of the same process still have their group; it is gone once the process exits
    assert lines.count("group alive after the command: True") == 2, p.stdout
    assert lines[-1] == "group alive at exit: False", p.stdout
