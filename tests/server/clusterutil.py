"""Helpers for the replica tests: a real redis-server, and comparing learned states."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from laser_serve.selector import Policy
from laser_serve.server.testing import RedisProcess

# Decision-side state that each replica keeps for itself: its own selection counts and the
# RNG its choices draw from. Everything else is learned from the shared stream.
LOCAL_ONLY = ("selections", "rng")


def need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make cluster-deps installs them)")


def redis_server(folder: Path) -> Iterator[RedisProcess]:
    need("redis-server")
    server = RedisProcess(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def learned(state: dict[str, Any]) -> dict[str, Any]:
    """A policy's state_dict without the per-replica parts, arrays as raw bytes."""
    arrays = {k: (a.dtype.str, a.shape, a.tobytes()) for k, a in state["arrays"].items()}
    extra = {k: v for k, v in state["extra"].items() if k not in LOCAL_ONLY}
    arrays.pop("selections")
    return {"policy": state["policy"], "config": state["config"], "extra": extra, **arrays}


def learned_of(policy: Policy) -> dict[str, Any]:
    return learned(policy.state_dict())


def learned_of_file(data: bytes) -> dict[str, Any]:
    """``learned`` of a replica's local cluster snapshot (cluster-state.bin)."""
    from laser_serve.selector.state import decode_state
    from laser_serve.server.cluster import unpack_snapshot

    _, blob = unpack_snapshot(data)
    header, arrays = decode_state(blob, "snapshot")
    return learned({**header, "arrays": arrays})


def assert_bitwise_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs"


def pulls_of(state: dict[str, Any]) -> np.ndarray:
    dtype, _, data = state["pulls"]
    return np.frombuffer(data, dtype=dtype)
