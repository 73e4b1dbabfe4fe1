"""`laser-bench snapshot`: the learner snapshot at many pending selections.

Fills a fresh learner (no models: LinUCB over 3 arms, random contexts) with --pending
decisions waiting for feedback, then snapshots it --repeats times and reports the median
seconds, the longest time the learner lock was held (what Rerank and Feedback wait for),
the bytes written and the seconds a restart takes to load it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ARMS = ("a", "b", "c")


class _TimedLock:
    """The learner's lock, recording how long each hold lasts."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock, self.held = lock, [0.0]

    def __enter__(self) -> None:
        self.lock.acquire()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.held.append(time.perf_counter() - self.start)
        self.lock.release()


def measure(pending: int, dim: int, repeats: int) -> dict[str, Any]:
    from laser_serve import config
    from laser_serve.server.learning import Learner
    from laser_serve.server.metrics import Metrics

    state = Path(tempfile.mkdtemp(prefix="laser-snapshot-"))
    c = config.load(None, [f"server.state_dir={state}", f"server.max_pending={pending}"])
    learner = Learner(c, ARMS, dim, Metrics())
    learner.open()
    X = np.random.default_rng(0).standard_normal((pending, dim)).astype(np.float32)
    for x in X:
        learner.record(learner.policy, learner.policy.decide(x), x, 4, 0, True, -1.0)
    timed = _TimedLock(learner._lock)
    learner._lock = timed  # type: ignore[assignment]
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        learner.snapshot()
        seconds.append(time.perf_counter() - t)
    files = {p.name: p.stat().st_size for p in state.iterdir() if p.is_file()}
    t = time.perf_counter()
    Learner(c, ARMS, dim, Metrics()).load_readonly()
    return {
        "pending": pending,
        "dim": dim,
        "snapshot_s": statistics.median(seconds),
        "snapshot_s_all": seconds,
        "lock_held_s_max": max(timed.held),
        "learner_bytes": sum(v for k, v in files.items() if k.startswith(("learner", "pending"))),
        "selector_bytes": sum(v for k, v in files.items() if k.startswith("selector")),
        "load_s": time.perf_counter() - t,
        "loadavg": os.getloadavg(),
    }


def run(args: argparse.Namespace) -> int:
    from laser_bench.cli import emit

    r = measure(args.pending, args.dim, args.repeats)
    if args.json:
        emit(json.dumps(r, indent=2))
        return 0
    emit(
        "| pending | dim | snapshot s (median) | lock held s (max) | learner MB | "
        "selector MB | restart load s |\n|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {r['pending']} | {r['dim']} | {r['snapshot_s']:.2f} | {r['lock_held_s_max']:.2f} | "
        f"{r['learner_bytes'] / 1e6:.1f} | {r['selector_bytes'] / 1e6:.1f} | {r['load_s']:.2f} |"
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("snapshot", help=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--pending", type=int, default=100_000, help="selections waiting (100000)")
    p.add_argument("--dim", type=int, default=384, help="context dimension (384: MiniLM)")
    p.add_argument("--repeats", type=int, default=3, help="snapshots timed (3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
