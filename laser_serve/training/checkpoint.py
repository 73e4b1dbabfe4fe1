"""Checkpoints that let `--resume` continue bit-for-bit.

Layout under --out:
  latest                   name of the newest complete checkpoint (flipped atomically)
  checkpoint-000012/       model/ (adapter or full model), optimizer.pt, selector.npz,
                           rng.pt (torch), state.json (position, python/numpy RNG, history)
A checkpoint is written to a temp folder and renamed before `latest` points at it, so a
crash leaves the previous checkpoint usable; older ones are then removed.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.durable import atomic_write
from laser_serve.errors import ConfigError
from laser_serve.selector import Policy
from laser_serve.training.policy import TrainablePolicy

LATEST = "latest"


def rng_state() -> dict[str, Any]:
    """Python and numpy global RNG states as JSON (torch's goes to rng.pt)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert not isinstance(keys, str)  # legacy=True: the MT19937 tuple
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(
    out: Path,
    step: int,
    policy: TrainablePolicy,
    optimizer: Any,
    selector: Policy,
    state: dict[str, Any],
) -> Path:
    import torch

    final = out / f"checkpoint-{step:06d}"
    tmp = out / f".checkpoint-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy.save(tmp / "model")
    atomic_write(tmp / "optimizer.pt", _torch_bytes(optimizer.state_dict()))
    selector.save(tmp / "selector.npz")
    atomic_write(tmp / "rng.pt", _torch_bytes(torch.get_rng_state()))
    state = {**state, "rng": rng_state()}
    atomic_write(tmp / "state.json", json.dumps(state).encode())
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    atomic_write(out / LATEST, final.name.encode())
    for old in out.glob("checkpoint-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(out: Path) -> Path | None:
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    folder = out / pointer.read_text().strip()
    return folder if (folder / "state.json").is_file() else None


def load(folder: Path, policy: TrainablePolicy, optimizer: Any, selector: Policy) -> dict[str, Any]:
    """Restore everything saved in `folder` in place; returns its state.json."""
    import torch

    try:
        state = json.loads((folder / "state.json").read_text())
        policy.load(folder / "model")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        selector.load(folder / "selector.npz")
        torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
        set_rng_state(state["rng"])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"checkpoint {folder} cannot be loaded ({type(exc).__name__}: {exc}); start a new "
            "run with another --out"
        ) from None
    return state
