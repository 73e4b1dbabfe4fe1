"""Three replicas, one Redis, nginx in front: they learn as one, through faults.

Real processes on 127.0.0.1: redis-server (append-only, fsync always), three laser-serve
replicas (caller candidates, two light MiniLM RMs, LinUCB) and nginx balancing gRPC over
them. Clients send Rerank through nginx and to single replicas, and Feedback through nginx
and to a replica other than the one that selected. At each check every replica's learned
state is bitwise equal to the others' and to a fold of the stream in this process, and the
pull counts and reward sums equal exactly the acknowledged feedback (rewards are multiples
of 1/8, so their float sums do not depend on the order)."""

from __future__ import annotations

import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from clusterutil import assert_bitwise_equal, learned_of, learned_of_file, need, pulls_of

from laser_serve import config as config_module
from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import NginxProcess, RedisProcess, ServerProcess, free_port

pytest.importorskip("redis")
from laser_serve.server.cluster import LOCAL_SNAPSHOT, ClusterLearner, unpack_snapshot  # noqa: E402
from laser_serve.server.metrics import Metrics  # noqa: E402

pytestmark = pytest.mark.timeout(600)
ARMS = ("long", "short")
FAULTS = 10
CONFIG = """
[server]
snapshot_interval_s = 2

[cluster]
redis_url = "{url}"
timeout_s = 0.3
snapshots_kept = 2

[[reward_models]]
name = "long"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"

[[reward_models]]
name = "short"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"
max_length = 32
"""


@dataclass
class Cluster:
    tmp: Path
    redis: RedisProcess
    config: Path
    ports: list[int]  # the replicas', fixed: nginx balances over them
    replicas: list[ServerProcess] = field(default_factory=list)
    nginx: NginxProcess | None = None
    acked: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (RM, reward)

    def replica(self, i: int, name: str = "") -> ServerProcess:
        """Replica ``i`` (a fresh process on its port); past the three: a new one."""
        port = self.ports[i] if i < len(self.ports) else 0
        name = name or f"r{i}"
        return ServerProcess(
            ["--config", str(self.config), "--generator", "hf", "--port", str(port),
             "--set", f"server.replica_id={name}"],
            str(self.tmp / name),
            self.tmp / f"{name}.log",
        )  # fmt: skip

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    @property
    def lb(self) -> str:
        assert self.nginx is not None
        return self.nginx.target


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need("redis-server", "nginx")
    tmp = tmp_path_factory.mktemp("cluster")
    redis_proc = RedisProcess(tmp / "redis")
    redis_proc.start()
    config = tmp / "laser.toml"
    config.write_text(textwrap.dedent(CONFIG.format(url=redis_proc.url)))
    c = Cluster(tmp, redis_proc, config, [free_port() for _ in range(3)])
    c.replicas = [c.replica(i) for i in range(3)]
    starters = [threading.Thread(target=r.start, args=(600,)) for r in c.replicas]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    c.nginx = NginxProcess(tmp / "nginx", c.targets)
    c.nginx.start()
    try:
        yield c
    finally:
        c.nginx.stop()
        for r in c.replicas:
            r.kill()
        redis_proc.kill()


def rerank(stub: rpc.LaserStub, rng: random.Random) -> tuple[str, str]:
    q = f"question {rng.randint(0, 10**6)}?"
    resp = stub.Rerank(rerank_request(q, candidates=["a", "b c"], context_text=q), timeout=30)
    return resp.selection_id, resp.reward_models[0]


def send_feedback(c: Cluster, stub: rpc.LaserStub, sid: str, rm: str, reward: float) -> str:
    """Feedback; returns the outcome. ALREADY_EXISTS means an earlier try landed."""
    try:
        stub.Feedback(pb.FeedbackRequest(selection_id=sid, reward=reward), timeout=10)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            return err.code().name
    c.acked[sid] = (rm, reward)
    return "OK"


def check_converged(c: Cluster, servers: list[ServerProcess]) -> None:
    """Every replica's local snapshot reaches the stream's head; then their learned states,
    a fold of the stream in this process and the acknowledged feedback all agree."""
    import redis

    head = int(redis.Redis.from_url(c.redis.url).get("laser:seq") or 0)
    assert head == len(c.acked)  # every append was acknowledged, none twice
    deadline = time.monotonic() + 60
    states = []
    for server in servers:
        path = Path(server.state_dir) / LOCAL_SNAPSHOT
        while not path.exists() or unpack_snapshot(path.read_bytes())[0].seq < head:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        states.append(learned_of_file(path.read_bytes()))
    ref_config = config_module.load(c.config, [f"server.state_dir={c.tmp / f'fold-{head}'}"])
    fold = ClusterLearner(ref_config, ARMS, 384, Metrics())
    fold.open()
    assert fold.mark.seq == head
    reference = learned_of(fold.policy)
    fold.close()
    for state in states:
        assert_bitwise_equal(state, reference)
    pulls, sums = Counter(), Counter()
    for rm, reward in c.acked.values():
        pulls[rm] += 1
        sums[rm] += reward
    assert pulls_of(reference).tolist() == [pulls[a] for a in ARMS]
    norm_sum = np.frombuffer(reference["norm_reward_sum"][2], dtype="<f8")
    assert norm_sum.tolist() == [sums[a] for a in ARMS]  # exact: multiples of 1/8


def test_feedback_anywhere_through_nginx_learns_as_one(cluster: Cluster) -> None:
    c, rng = cluster, random.Random(0)
    with grpc.insecure_channel(c.lb) as lb:
        channels = [grpc.insecure_channel(t) for t in c.targets]
        stubs = [rpc.LaserStub(ch) for ch in channels]
        via_lb = rpc.LaserStub(lb)
        for i in range(36):
            reward = rng.randint(0, 8) / 8
            if i % 2:  # through nginx both ways
                sid, rm = rerank(via_lb, rng)
                assert send_feedback(c, via_lb, sid, rm, reward) == "OK"
                retry_on = stubs[i % 3]
            else:  # selected on one replica, feedback to another
                chooser = i % 3
                sid, rm = rerank(stubs[chooser], rng)
                assert send_feedback(c, stubs[(chooser + 1) % 3], sid, rm, reward) == "OK"
                retry_on = stubs[(chooser + 2) % 3]
            with pytest.raises(grpc.RpcError) as err:  # the retry, on yet another replica
                retry_on.Feedback(pb.FeedbackRequest(selection_id=sid, reward=reward))
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # An id from another cluster on the same Redis (key prefix "other") is unknown here.
        other = ClusterLearner(
            config_module.load(
                c.config, [f"server.state_dir={c.tmp / 'other'}", "cluster.key_prefix=other"]
            ),
            ARMS,
            384,
            Metrics(),
        )
        x = np.zeros(384, dtype=np.float32)
        foreign = other.record(other.policy, other.policy.decide(x), x, 2, 0, True, None)
        with pytest.raises(grpc.RpcError) as err:
            via_lb.Feedback(pb.FeedbackRequest(selection_id=foreign, reward=0.5))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        for ch in channels:
            ch.close()
    check_converged(c, c.replicas)


def test_sigkill_replicas_and_redis_under_load_lose_nothing(cluster: Cluster) -> None:
    c, rng = cluster, random.Random(1)
    stop = threading.Event()
    outages: list[tuple[float, float]] = []  # Redis down, padded
    not_found: list[tuple[float, float]] = []  # Rerank intervals whose feedback was unknown
    waiting: list[tuple[str, str, float, float, float]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def load(target_of: int) -> None:
        r = random.Random(target_of)
        try:
            while not stop.is_set():
                target = c.lb if target_of == 0 else r.choice(c.targets)
                with grpc.insecure_channel(target) as ch:
                    stub = rpc.LaserStub(ch)
                    with lock:
                        item = waiting.pop(0) if waiting and r.random() < 0.5 else None
                    if item is not None:
                        outcome = send_feedback(c, stub, *item[:3])
                        if outcome == "NOT_FOUND":
                            not_found.append(item[3:])
                        elif outcome != "OK":
                            with lock:
                                waiting.append(item)
                            time.sleep(0.05)
                        continue
                    t0 = time.time()
                    try:
                        sid, rm = rerank(stub, r)
                    except grpc.RpcError:
                        time.sleep(0.05)  # its replica was killed: nginx or we try another
                        continue
                    with lock:
                        waiting.append((sid, rm, r.randint(0, 8) / 8, t0, time.time()))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    def restart(server: ServerProcess) -> None:
        try:
            server.start(600)
        except RuntimeError:  # killed again while starting: one more fault, and its restart
            pass

    before = len(c.acked)
    clients = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in clients:
        t.start()
    restarts: list[threading.Thread] = []
    for fault in range(FAULTS):
        time.sleep(rng.uniform(0.5, 2.0))
        if fault % 2:  # Redis: SIGKILL, down for a moment, back from its append-only file
            down = time.time()
            c.redis.kill()
            time.sleep(rng.uniform(0.2, 1.0))
            c.redis.start()
            outages.append((down - 0.5, time.time() + 0.5))
        else:
            i = rng.randrange(3)
            if any(t.is_alive() for t in restarts):
                i = next(j for j, r in enumerate(c.replicas) if r.proc and r.proc.poll() is None)
            c.replicas[i].kill()
            c.replicas[i] = c.replica(i)
            restarts.append(threading.Thread(target=restart, args=(c.replicas[i],)))
            restarts[-1].start()
    for t in restarts:
        t.join()
    time.sleep(1)
    stop.set()
    for t in clients:
        t.join()
    assert not errors, errors
    with grpc.insecure_channel(c.lb) as ch:  # everything left, all up again
        stub = rpc.LaserStub(ch)
        for sid, rm, reward, t0, t1 in waiting:
            outcome = send_feedback(c, stub, sid, rm, reward)
            if outcome == "NOT_FOUND":
                not_found.append((t0, t1))
            else:
                assert outcome == "OK", outcome
    # Only a selection made while Redis was down may be unknown (it was never shared).
    for t0, t1 in not_found:
        assert any(t0 <= end and t1 >= start for start, end in outages), (t0, t1)
    assert len(c.acked) - before >= 30  # the load did real work between the faults
    check_converged(c, c.replicas)


def test_a_replica_started_late_converges(cluster: Cluster) -> None:
    late = cluster.replica(3, "late")
    late.start(600)
    try:
        check_converged(cluster, [late, *cluster.replicas])
    finally:
        late.kill()
