"""bench/device_scoring.py, the prepared accelerator script, on a toy config on the CPU: it
runs with nothing but torch and transformers, writes every row, and its shared-prefix and
per-candidate log-probabilities agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "device_scoring.py"
pytestmark = pytest.mark.timeout(300)


def test_toy_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    argv = ["--tiny", "--device", "cpu", "--dtype", "float32", "--lengths", "24,40"]
    argv += ["--ns", "1,3", "--requests", "3", "--repeats", "1", "--out", str(out)]
    # Run as the device machine runs it: a plain script, from outside the package.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["dtype"] == "float32"
    assert [(r["prompt_tokens"], r["n"]) for r in doc["rows"]] == [
        (24, 1),
        (24, 3),
        (40, 1),
        (40, 3),
    ]
    for r in doc["rows"]:
        assert min(r["seconds"], r["old_seconds"], r["bound_seconds"]) > 0
        assert r["max_abs_logprob_diff"] < 1e-4  # the same log-probabilities both ways
    assert [(b["prompt_tokens"], b["requests"]) for b in doc["batching"]] == [(24, 3), (40, 3)]
    assert all(b["gain"] == pytest.approx(b["alone_s"] / b["batched_s"]) for b in doc["batching"])
    assert "| prompt tokens | n | shared s |" in done.stdout
