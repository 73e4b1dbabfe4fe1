"""The cluster learner against a real redis-server (no models, no gRPC): shared selections,
exactly-once feedback, the ordered fold, snapshots with their watermark, Redis outages."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from clusterutil import assert_bitwise_equal, learned_of, pulls_of, redis_server
from prometheus_client import generate_latest

from laser_serve import config as config_module
from laser_serve.errors import InvalidArgument
from laser_serve.server.learning import AlreadyAnswered, NotFound, Unavailable
from laser_serve.server.metrics import Metrics
from laser_serve.server.testing import RedisProcess

pytest.importorskip("redis")
from laser_serve.server.cluster import ClusterLearner  # noqa: E402

ARMS = ("a", "b", "c")
DIM = 8


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    yield from redis_server(tmp_path / "redis")


def make(tmp: Path, name: str, url: str, *settings: str, prefix: str = "t") -> ClusterLearner:
    c = config_module.load(
        None,
        [
            f"server.state_dir={tmp / name}",
            f"server.replica_id={name}",
            f"cluster.redis_url={url}",
            f"cluster.key_prefix={prefix}",
            "cluster.timeout_s=0.3",
            *settings,
        ],
    )
    learner = ClusterLearner(c, ARMS, DIM, Metrics())
    learner.open()
    return learner


def decide(learner: ClusterLearner, rng: np.random.Generator) -> str:
    x = rng.standard_normal(DIM).astype(np.float32)
    return learner.record(learner.policy, learner.policy.decide(x), x, 2, 0, True, None)


def wait(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def caught_up(*learners: ClusterLearner) -> Callable[[], bool]:
    def check() -> bool:
        head = learners[0].shared.head()
        return all(lr.mark.seq == head for lr in learners)

    return check


def test_feedback_anywhere_once_and_replicas_bitwise_equal(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    a, b = (make(tmp_path, n, redis_proc.url, "selector.reward_norm=quantile") for n in "ab")
    rng = np.random.default_rng(0)
    rewards = {}
    for i in range(60):
        chooser, other = (a, b) if i % 2 else (b, a)
        sid = decide(chooser, rng)
        rewards[sid] = float(rng.normal(3, 2))  # any finite reward: quantile-normalized
        other.feedback(sid, rewards[sid])
        with pytest.raises(AlreadyAnswered):
            chooser.feedback(sid, rewards[sid])  # the retry, on the replica that chose
    with pytest.raises(NotFound):
        a.feedback("0" * 32, 0.5)
    wait(caught_up(a, b))
    assert a.mark.seq == 60
    assert_bitwise_equal(learned_of(a.policy), learned_of(b.policy))
    assert pulls_of(learned_of(a.policy)).sum() == 60
    # One that folds the same events from the start (no snapshot) agrees too.
    c = make(tmp_path, "c", redis_proc.url, "selector.reward_norm=quantile")
    wait(caught_up(c))
    assert_bitwise_equal(learned_of(a.policy), learned_of(c.policy))
    for lr in (a, b, c):
        lr.close()


def test_other_cluster_ids_and_bad_rewards(tmp_path: Path, redis_proc: RedisProcess) -> None:
    a = make(tmp_path, "a", redis_proc.url, prefix="one")
    other = make(tmp_path, "o", redis_proc.url, prefix="two")
    sid = decide(a, np.random.default_rng(1))
    with pytest.raises(NotFound):
        other.feedback(sid, 0.5)  # same Redis, another cluster's key prefix
    with pytest.raises(InvalidArgument, match="reward_range"):
        a.feedback(sid, 7.0)
    a.feedback(sid, 0.25)  # the refused reward claimed nothing
    wait(caught_up(a))
    assert other.shared.head() == 0
    a.close()
    other.close()


def test_redis_down_unavailable_then_catch_up(tmp_path: Path, redis_proc: RedisProcess) -> None:
    a, b = (make(tmp_path, n, redis_proc.url) for n in "ab")
    rng = np.random.default_rng(2)
    acked = 0
    for _ in range(10):
        a.feedback(decide(a, rng), 0.5)
        acked += 1
    redis_proc.kill()
    sid = decide(a, rng)  # Rerank still answers from local state
    with pytest.raises(Unavailable, match="retry"):
        b.feedback(sid, 0.5)
    wait(lambda: not a.redis_ok and not b.redis_ok)
    # A's Rerank may have seen the outage first (share_selection); its reader sees it too.
    wait(lambda: a.cluster.redis_errors.labels("read")._value.get() >= 1)
    exposition = generate_latest(a.metrics.registry).decode()
    assert "laser_cluster_redis_up 0.0" in exposition
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=exposition, text=True, capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    redis_proc.start()  # the append-only file brings every acknowledged event back
    for _ in range(5):
        b.feedback(decide(b, rng), 1.0)
        acked += 1
    wait(caught_up(a, b))
    assert a.mark.seq == acked and a.redis_ok
    assert_bitwise_equal(learned_of(a.policy), learned_of(b.policy))
    a.close()
    b.close()


def test_snapshots_trim_and_a_late_replica_converges(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    a = make(tmp_path, "a", redis_proc.url, "cluster.snapshots_kept=1")
    stale = make(tmp_path, "stale", redis_proc.url)
    stale.stop()  # cut off from the stream while the rest goes on
    rng = np.random.default_rng(3)
    for i in range(30):
        a.feedback(decide(a, rng), i / 30)
        if i % 10 == 9:
            wait(caught_up(a))
            a.snapshot()
    shared = a.shared
    assert shared.r.xlen(shared.stream) == 1  # trimmed below the only snapshot kept
    mark, _ = shared.newest_snapshot() or (None, b"")
    assert mark is not None and mark.seq == 30
    late = make(tmp_path, "late", redis_proc.url)  # loads it: events 1..29 are gone
    assert late.mark.seq == 30
    # The stale replica sees event 30 after 0: the gap makes it load the shared snapshot.
    assert stale.mark.seq == 0 and stale._follow(block_ms=None) == 1
    assert stale.mark.seq == 30 and stale.cluster.snapshot_loads._value.get() == 1
    for _ in range(3):
        a.feedback(decide(a, rng), 0.75)
    wait(caught_up(a, late))
    stale._follow(block_ms=None)
    for other in (late, stale):
        assert_bitwise_equal(learned_of(a.policy), learned_of(other.policy))
    for lr in (a, late, stale):
        lr.close()


def test_start_with_redis_down_serves_local_state_then_catches_up(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    a = make(tmp_path, "a", redis_proc.url)
    rng = np.random.default_rng(4)
    for _ in range(5):
        a.feedback(decide(a, rng), 0.5)
    wait(caught_up(a))
    a.close()  # its local snapshot holds event 5
    writer = make(tmp_path, "w", redis_proc.url)
    writer.feedback(decide(writer, rng), 1.0)  # event 6, while a is down
    redis_proc.kill()
    again = make(tmp_path, "a", redis_proc.url)
    assert again.mark.seq == 5 and not again.redis_ok
    decide(again, rng)  # Rerank answers from local state
    redis_proc.start()
    wait(lambda: again.mark.seq == 6)
    wait(caught_up(writer, again))
    assert_bitwise_equal(learned_of(writer.policy), learned_of(again.policy))
    writer.close()
    again.close()


def test_ope_reads_the_shared_stream(tmp_path: Path, redis_proc: RedisProcess, capsys) -> None:
    """`laser-bench ope --redis`: the stream's events from two replicas are the decision log;
    the logged ε-LinUCB's IPS estimate is the mean acknowledged reward."""
    import json

    from laser_bench import cli

    policy = "selector.policy=linucb:epsilon=0.3"
    a, b = (make(tmp_path, n, redis_proc.url, policy) for n in "ab")
    rng = np.random.default_rng(5)
    acked = []
    for i in range(40):
        chooser, other = (a, b) if i % 2 else (b, a)
        sid = decide(chooser, rng)
        if i % 5 == 0:
            continue  # still pending: not in the stream
        reward = float(rng.integers(0, 9)) / 8
        other.feedback(sid, reward)
        acked.append(reward)
    assert cli.main(["ope", "--redis", redis_proc.url, "--key-prefix", "t", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["rows"] == doc["counts"]["decisions"] == len(acked) == 32
    assert doc["arms"] == list(ARMS) and doc["dim"] == DIM
    assert doc["logged_policies"] == {"linucb:epsilon=0.3": 32}
    est = {(r["target"], r["estimator"]): r for r in doc["rows"]}
    assert est[("logged", "ips")]["estimate"] == pytest.approx(np.mean(acked), abs=1e-12)
    assert {"random", "fixed:a", "lints:alpha=0.3"} <= {r["target"] for r in doc["rows"]}
    # Another cluster's prefix has no events; a Redis that is not there is a clear error.
    assert cli.main(["ope", "--redis", redis_proc.url, "--key-prefix", "other"]) == 2
    assert "holds no decisions yet" in capsys.readouterr().err
    for lr in (a, b):
        lr.close()
    redis_proc.kill()
    assert cli.main(["ope", "--redis", redis_proc.url, "--key-prefix", "t"]) == 2
    assert f"--redis {redis_proc.url}" in capsys.readouterr().err
