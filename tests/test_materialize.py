"""Materializing a builtin model: one process at a time, and what a killed one left behind
is cleaned up. The dequantization itself is faked (it is the slow part, and the real path
runs in every test that loads a builtin model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from laser_serve import models


def test_one_materialization_at_a_time_and_stale_folders_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASER_HOME", str(tmp_path))
    model = models.GGUF_MODELS[models.SMOLLM2]
    stale = tmp_path / "models" / f".{model.folder}-k1lled"
    (stale / "gguf").mkdir(parents=True)
    (stale / "gguf" / "half.gguf").write_bytes(b"\0" * 1024)
    calls = []

    def fake_dequantize(gguf_dir: Path, gguf_file: str, out: Path) -> None:
        calls.append(gguf_file)
        time.sleep(0.3)  # long enough for the other thread to wait on the lock
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_dequantize", fake_dequantize)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(models._materialize(model)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = tmp_path / "models" / model.folder
    assert results == [target, target]
    assert calls == [model.gguf_file]  # the second caller waited and found the folder
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert not stale.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [
        f".{model.folder}.lock",
        model.folder,
    ]


def test_a_failed_materialization_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASER_HOME", str(tmp_path))
    model = models.GGUF_MODELS[models.SMOLLM2]

    def failing_dequantize(gguf_dir: Path, gguf_file: str, out: Path) -> None:
        out.mkdir()
        raise MemoryError("out of memory")

    monkeypatch.setattr(models, "_dequantize", failing_dequantize)
    with pytest.raises(MemoryError):
        models._materialize(model)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{model.folder}.lock"]
