"""`laser-bench replicas`: throughput, propagation lag and catch-up of replicas that learn as one.

For each replica count (``--replicas``, default 1 and 3) the bench starts its own cluster of
real processes on 127.0.0.1: redis-server (append-only, fsync always), N laser-serve replicas
(``--generator hf``, caller candidates, two MiniLM reward models, LinUCB) and nginx balancing
gRPC over them. Through nginx it measures:

- Rerank/s: ``--concurrency`` callers sending Rerank (4 caller candidates) for ``--seconds``;
- Feedback/s: the same callers sending Feedback for those selections and ``--selections``
  more (shared by this process through the same ClusterLearner code a replica's Rerank runs,
  so that the phase does not wait for a thousand model calls), until ``--lag-samples`` are
  left;
- propagation lag: for each of those, one Feedback at a time, then every replica is polled
  (GetSelectorState) until its pulls count the new event; p50 and p99 of the time from the
  Feedback's OK to the last replica applying it.

Catch-up (on the last cluster): one replica is stopped (SIGTERM: it saves its local
snapshot), ``--catchup-events`` events are appended (decisions and feedback made in this
process through the same ClusterLearner code the replicas run, so the count does not wait
for thousands of model calls), and the replica is started again; ``catchup_s`` is the time its
start-up spent loading the snapshot and replaying the stream (``laser_cluster_catchup_seconds``).
Shared snapshots are off during the bench (``server.snapshot_interval_s`` 3600), so that the
restarted replica replays every one of those events.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from laser_bench.load import percentile

ARMS = ("minilm-sim", "minilm-short")
CONFIG = """
[server]
snapshot_interval_s = 3600

[cluster]
redis_url = "{url}"
key_prefix = "{prefix}"

[[reward_models]]
name = "minilm-sim"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"
max_length = 256

[[reward_models]]
name = "minilm-short"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"
max_length = 32
"""
CANDIDATES = ["Paris.", "The capital of France is Paris.", "Lyon.", "I do not know."]


@dataclass
class Cluster:
    """Redis is shared by the bench's clusters (each has its own key prefix)."""

    folder: Path
    config: Path
    replicas: list[Any] = field(default_factory=list)  # ServerProcess
    nginx: Any = None  # NginxProcess
    acked: int = 0


def start_cluster(folder: Path, url: str, n: int) -> Cluster:
    from laser_serve.server.testing import NginxProcess, ServerProcess, free_port

    folder.mkdir(parents=True)
    config = folder / "laser.toml"
    config.write_text(textwrap.dedent(CONFIG.format(url=url, prefix=folder.name)))
    c = Cluster(folder, config)
    for i in range(n):
        args = ["--config", str(config), "--generator", "hf", "--port", str(free_port())]
        c.replicas.append(ServerProcess(args, str(folder / f"r{i}"), folder / f"r{i}.log"))
    starters = [threading.Thread(target=r.start, args=(900,)) for r in c.replicas]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    if not all(r.target for r in c.replicas):
        raise RuntimeError("a replica did not start; see its log in " + str(folder))
    c.nginx = NginxProcess(folder / "nginx", [r.target for r in c.replicas])
    c.nginx.start()
    return c


def stop_cluster(c: Cluster) -> None:
    if c.nginx is not None:
        c.nginx.stop()
    for r in c.replicas:
        r.kill()


def _callers(target: str, n: int, fn: Any, seconds: float) -> tuple[int, float]:
    """Run ``fn(stub, rng)`` in ``n`` threads, each on its own channel to ``target``, until
    it returns False or time is up; returns (calls that returned True, seconds)."""
    import grpc

    from laser_serve.api import rpc

    done = [0] * n
    deadline = time.monotonic() + seconds

    def loop(i: int, target: str) -> None:
        rng = random.Random(i)
        with grpc.insecure_channel(target) as channel:
            stub = rpc.LaserStub(channel)
            while time.monotonic() < deadline:
                ok = fn(stub, rng)
                if ok is False:
                    return
                done[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i, target)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.monotonic() - started


def measure(
    c: Cluster, concurrency: int, seconds: float, selections: int, lag_samples: int
) -> dict[str, Any]:
    import grpc

    from laser_serve.api import pb, rpc
    from laser_serve.client import rerank_request

    pending: list[str] = []
    lock = threading.Lock()

    def rerank(stub: Any, rng: random.Random) -> bool:
        q = f"What is the capital of France? ({rng.randint(0, 10**9)})"
        resp = stub.Rerank(rerank_request(q, candidates=CANDIDATES, context_text=q), timeout=60)
        with lock:
            pending.append(resp.selection_id)
        return True

    def feedback(stub: Any, rng: random.Random) -> bool:
        with lock:
            if len(pending) <= lag_samples:  # those are for the lag samples
                return False
            sid = pending.pop()
        stub.Feedback(pb.FeedbackRequest(selection_id=sid, reward=rng.random()), timeout=60)
        return True

    reranks, rerank_s = _callers(c.nginx.target, concurrency, rerank, seconds)
    pending += share_selections(c, selections)
    feedbacks, feedback_s = _callers(c.nginx.target, concurrency, feedback, seconds)
    c.acked += feedbacks
    wait_applied(c, c.acked, timeout=120)

    lags = []
    with grpc.insecure_channel(c.nginx.target) as channel:
        stub = rpc.LaserStub(channel)
        rng = random.Random(0)
        while len(pending) < lag_samples:
            rerank(stub, rng)
        for _ in range(lag_samples):
            sid = pending.pop()
            stub.Feedback(pb.FeedbackRequest(selection_id=sid, reward=rng.random()), timeout=60)
            ok = time.perf_counter()
            c.acked += 1
            wait_applied(c, c.acked, timeout=60)
            lags.append((time.perf_counter() - ok) * 1000)
    return {
        "replicas": len(c.replicas),
        "rerank_per_s": reranks / rerank_s,
        "feedback_per_s": feedbacks / feedback_s,
        "lag_ms_p50": percentile(lags, 50),
        "lag_ms_p99": percentile(lags, 99),
    }


def writer(c: Cluster) -> Any:
    """A ClusterLearner in this process, on the cluster's Redis and configuration: it shares
    selections and appends feedback through the same code a replica runs."""
    from laser_serve import config as config_module
    from laser_serve.server.cluster import ClusterLearner
    from laser_serve.server.metrics import Metrics

    cfg = config_module.load(c.config, [f"server.state_dir={c.folder / 'writer'}"])
    learner = ClusterLearner(cfg, ARMS, 384, Metrics())
    learner.open()
    return learner


def share_selections(c: Cluster, count: int) -> list[str]:
    """``count`` selections shared the way a replica's Rerank shares them (random contexts),
    so that Feedback/s does not wait for thousands of Reranks."""
    w = writer(c)
    rng = np.random.default_rng(len(c.replicas))
    ids = []
    for _ in range(count):
        x = rng.standard_normal(384).astype(np.float32)
        ids.append(w.record(w.policy, w.policy.decide(x), x, 4, 0, True, None))
    w.stop()  # no snapshot: see catch_up
    return ids


def wait_applied(c: Cluster, total: int, timeout: float) -> None:
    """Until every replica's pulls add up to ``total`` acknowledged feedback."""
    import grpc

    from laser_serve.api import pb, rpc

    deadline = time.monotonic() + timeout
    for r in c.replicas:
        with grpc.insecure_channel(r.target) as channel:
            stub = rpc.LaserStub(channel)
            while True:
                state = stub.GetSelectorState(pb.GetSelectorStateRequest(), timeout=10)
                if sum(a.pulls for a in state.arms) >= total:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{r.target} applied too few events; see {r.log_path}")


def catch_up(c: Cluster, events: int) -> float:
    """Stop replica 0, append ``events`` events, start it again; its catch-up seconds."""
    from laser_serve.server.testing import ServerProcess

    replica = c.replicas[0]
    replica.stop()
    w = writer(c)
    rng = np.random.default_rng(0)
    for _ in range(events):
        x = rng.standard_normal(384).astype(np.float32)
        w.feedback(w.record(w.policy, w.policy.decide(x), x, 4, 0, True, None), rng.random())
    w.stop()  # no snapshot: the restarted replica replays every event
    c.acked += events
    again = ServerProcess(replica.args, replica.state_dir, replica.log_path)
    again.start(900)
    c.replicas[0] = again
    wait_applied(c, c.acked, timeout=600)
    with urllib.request.urlopen(again.metrics_url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("laser_cluster_catchup_seconds "):
                return float(line.split()[1])
    raise RuntimeError("laser_cluster_catchup_seconds missing from the replica's metrics")


def run(args: argparse.Namespace) -> int:
    from laser_bench.cli import emit

    from laser_serve.server.testing import RedisProcess

    counts = [int(v) for v in args.replicas.split(",")]
    rows, catchup_s = [], float("nan")
    with tempfile.TemporaryDirectory(prefix="laser-replicas-") as folder:
        tmp = Path(folder)
        redis_proc = RedisProcess(tmp / "redis")
        url = redis_proc.start()
        try:
            for i, n in enumerate(counts):
                c = start_cluster(tmp / f"c{n}", url, n)
                try:
                    rows.append(
                        measure(
                            c, args.concurrency, args.seconds, args.selections, args.lag_samples
                        )
                    )
                    if i == len(counts) - 1:
                        catchup_s = catch_up(c, args.catchup_events)
                finally:
                    stop_cluster(c)
        finally:
            redis_proc.kill()
    if args.json:
        emit(json.dumps({"rows": rows, "catchup_s": catchup_s}, indent=2))
        return 0
    lines = [
        "| replicas | Rerank/s | Feedback/s | lag p50 ms | lag p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['replicas']} | {r['rerank_per_s']:.1f} | {r['feedback_per_s']:.1f} | "
        f"{r['lag_ms_p50']:.1f} | {r['lag_ms_p99']:.1f} |"
        for r in rows
    ]
    lines.append(f"\ncatch-up of a replica restarted after {args.catchup_events} events: "
                 f"{catchup_s:.2f} s")  # fmt: skip
    emit("\n".join(lines))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("replicas", help=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--replicas", default="1,3", help="replica counts, comma-separated (1,3)")
    p.add_argument("--concurrency", type=int, default=8, help="callers through nginx (8)")
    p.add_argument("--seconds", type=float, default=30, help="seconds of Rerank (30)")
    p.add_argument(
        "--selections",
        type=int,
        default=1000,
        help="selections shared for the Feedback phase besides the Reranks' own (1000)",
    )
    p.add_argument("--lag-samples", type=int, default=100, help="lag measurements (100)")
    p.add_argument(
        "--catchup-events", type=int, default=10_000, help="events a restart replays (10000)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
