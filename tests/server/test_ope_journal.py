"""The decision log of a real server, read back: `laser-bench ope --journal` joins it with the
acknowledged feedback (the logged policy's estimates are what was seen), and a new server
started with `--warm-start` on it begins with those pulls (once: a restart ignores it)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from laser_bench import cli
from serverutil import LIGHT_ARMS, light_config

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server import journal
from laser_serve.server.testing import ServerProcess

QUESTIONS = [f"Which answer fits question {i}?" for i in range(7)]


def _traffic(stub: rpc.LaserStub, rounds: int, feedback_every: int = 1) -> list[float]:
    """Reranks that expect feedback; every ``feedback_every``-th gets none. Returns the
    acknowledged rewards (sim-b pays 0.9, the others 0.2 or 0.4 by question)."""
    acked = []
    for i in range(rounds):
        q = QUESTIONS[i % len(QUESTIONS)]
        resp = stub.Rerank(
            rerank_request(q, candidates=["yes", "no"], context_text=q, expect_feedback=True),
            timeout=120,
        )
        if feedback_every > 1 and i % feedback_every == 0:
            continue
        reward = 0.9 if resp.reward_models[0] == "sim-b" else 0.2 + 0.2 * (i % 2)
        stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=reward))
        acked.append(reward)
    return acked


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    tmp = tmp_path_factory.mktemp("ope-journal")
    config = light_config(tmp, '[selector]\npolicy = "linucb:epsilon=0.2"\n')
    server = ServerProcess(
        ["--config", str(config), "--generator", "hf"], str(tmp / "state"), tmp / "log"
    )
    with grpc.insecure_channel(server.start(timeout=300)) as channel:
        acked = _traffic(rpc.LaserStub(channel), 60, feedback_every=6)
    assert server.stop() == 0, server.log_tail()
    return tmp / "state", acked


def test_logged_policy_estimates_match_what_was_observed(journal_dir, capsys) -> None:
    state, acked = journal_dir
    assert cli.main(["ope", "--journal", str(state), "--json", "--n-boot", "300"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["rows"] == len(acked) == 50
    assert doc["counts"]["decisions"] == 60 and doc["counts"]["no_feedback"] == 10
    assert doc["arms"] == list(LIGHT_ARMS) and doc["dim"] == 384
    assert doc["logged_policies"] == {"linucb:epsilon=0.2": 50}
    est = {(r["target"], r["estimator"]): r for r in doc["rows"]}
    mean = float(np.mean(acked))
    assert est[("logged", "ips")]["estimate"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
    lo, hi = est[("logged", "dr")]["ci"]
    assert lo <= mean <= hi
    assert est[("logged", "ips")]["ess"] == pytest.approx(50)
    targets = {r["target"] for r in doc["rows"]}
    assert {"random", "round-robin", "lints:alpha=0.3", "linucb:alpha=1.0"} <= targets
    assert {f"fixed:{a}" for a in LIGHT_ARMS} <= targets
    # The ε floor gives every arm probability ε/K: no target lacks support.
    assert doc["warnings"] == []


def test_journal_table_and_errors(journal_dir, tmp_path, capsys) -> None:
    state, _ = journal_dir
    assert cli.main(["ope", "--journal", str(state), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "50 of 60 decisions have a reward (left out: no feedback 10)" in out
    assert "| logged | dr |" in out and "| fixed:sim-a | ips |" in out
    assert cli.main(["ope", "--journal", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert cli.main(["ope", "--journal", str(tmp_path)]) == 2
    assert "holds no journal" in capsys.readouterr().err


def _pulls(server: ServerProcess) -> dict[str, int]:
    with grpc.insecure_channel(server.start(timeout=300)) as channel:
        state = rpc.LaserStub(channel).GetSelectorState(pb.GetSelectorStateRequest())
    assert server.stop() == 0, server.log_tail()
    return {a.reward_model: a.pulls for a in state.arms}


def test_a_server_warm_started_from_the_journal_reports_its_pulls(journal_dir, tmp_path) -> None:
    state, acked = journal_dir
    dlog = journal.decision_log(state)
    expected = {a: int((dlog.chosen == k).sum()) for k, a in enumerate(dlog.arms)}
    config = light_config(tmp_path)
    args = ["--config", str(config), "--generator", "hf", "--warm-start", str(state)]
    fresh = tmp_path / "fresh"
    first = ServerProcess([*args, "--warm-start-rounds", "20"], str(fresh), tmp_path / "1.log")
    assert _pulls(first) == expected and sum(expected.values()) == len(acked)
    assert "selector warm-started from 50 logged decisions" in first.log_tail(20000)
    again = ServerProcess(args, str(fresh), tmp_path / "2.log")  # state exists: ignored
    assert _pulls(again) == expected
    assert "ignored" in again.log_tail() and "fresh state dir only" in again.log_tail()
