"""SIGKILL at random moments loses no acknowledged feedback and applies none twice."""

from __future__ import annotations

import random
import textwrap
import threading
from collections import defaultdict
from pathlib import Path

import grpc
import pytest

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import ServerProcess

KILLS = 5  # each restart costs ~13 s of imports and loading on 2 cores
# Two light RMs keep each restart to a few seconds.
CONFIG = """
[selector]
policy = "random"

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


def test_sigkill_loop_keeps_exactly_the_acknowledged_feedback(tmp_path: Path) -> None:
    (tmp_path / "laser.toml").write_text(textwrap.dedent(CONFIG))
    args = [
        "--config",
        str(tmp_path / "laser.toml"),
        "--generator",
        "hf",
        "--set",
        "server.snapshot_interval_s=1",
    ]
    state = str(tmp_path / "state")
    rng = random.Random(0)
    acked: dict[str, tuple[str, float]] = {}  # selection -> (credited RM, reward)
    waiting: list[tuple[str, str, float]] = []  # selections whose feedback is not yet acked

    def send(stub: rpc.LaserStub, item: tuple[str, str, float]) -> bool:
        sid, rm, reward = item
        try:
            stub.Feedback(pb.FeedbackRequest(selection_id=sid, reward=reward), timeout=10)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:  # an earlier try was applied
                acked[sid] = (rm, reward)
                return True
            assert err.code() != grpc.StatusCode.NOT_FOUND, "a journaled selection was lost"
            return False
        acked[sid] = (rm, reward)
        return True

    for kill in range(KILLS):
        server = ServerProcess(args, state, tmp_path / f"run-{kill}.log")
        target = server.start(timeout=300)
        # The kill comes at a random moment after the run's first Rerank, so that every
        # run does real work however slow the machine is.
        killer = threading.Timer(rng.uniform(0.2, 1.5), server.kill)
        with grpc.insecure_channel(target) as channel:
            stub = rpc.LaserStub(channel)
            while server.proc.poll() is None:
                if waiting and rng.random() < 0.6:
                    if not send(stub, waiting[0]):
                        break
                    waiting.pop(0)
                    continue
                q = f"question {rng.randint(0, 10**6)}?"
                try:
                    resp = stub.Rerank(rerank_request(q, candidates=["a", "b c"]), timeout=10)
                except grpc.RpcError:
                    break
                waiting.append(
                    (resp.selection_id, resp.reward_models[0], round(rng.uniform(0, 1), 3))
                )
                if not killer.is_alive() and not killer.finished.is_set():
                    killer.start()
        killer.cancel()
        server.kill()

    final = ServerProcess(args, state, tmp_path / "final.log")
    with grpc.insecure_channel(final.start(timeout=300)) as channel:
        stub = rpc.LaserStub(channel)
        for item in waiting:
            assert send(stub, item)
        arms = stub.GetSelectorState(pb.GetSelectorStateRequest()).arms
    assert final.stop() == 0

    pulls, sums = defaultdict(int), defaultdict(float)
    for rm, reward in acked.values():
        pulls[rm] += 1
        sums[rm] += reward
    assert len(acked) >= KILLS  # every run did real work before its kill
    for arm in arms:
        assert arm.pulls == pulls[arm.reward_model]
        assert arm.mean_reward * arm.pulls == pytest.approx(sums[arm.reward_model], abs=1e-9)
