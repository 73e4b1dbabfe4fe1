"""laser-bench keeps standard output for results: library logs written to fd 1 (vLLM's, in
this process or in a child process) go to stderr, so `--json > out.json` stays parseable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


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
