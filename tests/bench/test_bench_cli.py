"""laser-bench keeps standard output for results: library logs written to fd 1 (vLLM's, in
this process or in a child process) go to stderr, so `--json > out.json` stays parseable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

POOLS = Path(__file__).resolve().parents[2] / "bench" / "pools"


def test_library_output_goes_to_stderr_and_results_to_stdout() -> None:
    script = textwrap.dedent(
        """
        import os, subprocess, sys
        from laser_bench import cli

        with cli._results_only_on_stdout():
            print("python-level log")
            os.write(1, b"fd-level log\\n")
            subprocess.run([sys.executable, "-c", "print('child log')"], check=True)
            cli.emit('{"ok": true}')
        print("after the bench")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    first, rest = done.stdout.split("\n", 1)
    assert json.loads(first) == {"ok": True}
    assert rest == "after the bench\n"
    for line in ("python-level log", "fd-level log", "child log"):
        assert line in done.stderr


def test_results_reach_stdout_also_when_run_as_a_module() -> None:
    """`python -m laser_bench.cli` (how a build is run from a checkout) prints its results
    on stdout too, not into the logs."""
    args = ["mix", "--pools", str(POOLS), "--seeds", "1", "--methods", "greedy", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "laser_bench.cli", *args, "--bootstrap", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout)["methods"]["greedy"]["score"] > 0
