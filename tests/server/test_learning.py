"""The server learns from feedback, and keeps what it learned across restarts."""

from __future__ import annotations

import random
from pathlib import Path

import grpc
import pytest
from serverutil import light_config

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import ServerProcess

COUNTRIES = [
    "France",
    "Spain",
    "Italy",
    "Japan",
    "Peru",
    "Kenya",
    "Chile",
    "Norway",
    "Egypt",
    "India",
    "Canada",
    "Brazil",
    "Poland",
    "Greece",
    "Vietnam",
    "Mexico",
]
# Each task's feedback rewards one RM: LinUCB must learn which from the context alone.
BEST_RM = {"math": "sim-a", "geo": "sim-b"}
TASKS = '[server]\ntasks = ["default", "math", "geo"]\n'


def task_request(task: str, rng: random.Random) -> pb.RerankRequest:
    if task == "math":
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        question = f"Compute the sum {a} + {b} and show the arithmetic."
        candidates = [str(a + b), str(a + b + 1)]
    else:
        country = rng.choice(COUNTRIES)
        question = f"Which city is the capital of {country}? Name the city."
        candidates = ["The capital city.", "I do not know."]
    return rerank_request(
        question, candidates=candidates, context_text=question, task=task, expect_feedback=True
    )


def test_linucb_learns_the_right_rm_per_task(tmp_path: Path) -> None:
    """Over the light arms (real MiniLM RMs that cost milliseconds): what is learned is
    the selector's, not the RMs'."""
    config = light_config(tmp_path, TASKS)
    args = ["--config", str(config), "--generator", "hf"]
    server = ServerProcess(args, str(tmp_path / "state"), tmp_path / "log")
    with grpc.insecure_channel(server.start(timeout=300)) as channel:
        _learn_per_task(rpc.LaserStub(channel))
    assert server.stop() == 0, server.log_tail()


def _learn_per_task(stub: rpc.LaserStub) -> None:
    rng = random.Random(0)
    hits: list[bool] = []
    rounds = 80  # it learns within a few rounds; by chance (2 arms) 32/40 has p < 1e-4
    for i in range(rounds):
        task = "math" if i % 2 == 0 else "geo"
        resp = stub.Rerank(task_request(task, rng))
        chosen = resp.reward_models[0]
        stub.Feedback(
            pb.FeedbackRequest(
                selection_id=resp.selection_id, reward=1.0 if chosen == BEST_RM[task] else 0.0
            )
        )
        hits.append(chosen == BEST_RM[task])
    last = hits[-40:]
    assert sum(last) / len(last) >= 0.8, f"right RM in {sum(last)}/40 of the last calls"


def test_restart_keeps_what_was_learned(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = ["--config", str(light_config(tmp_path, TASKS)), "--generator", "hf"]
    first = ServerProcess(args, str(state), tmp_path / "first.log")
    with grpc.insecure_channel(first.start()) as channel:
        stub = rpc.LaserStub(channel)
        rng = random.Random(1)
        for i in range(6):
            resp = stub.Rerank(task_request("math", rng))
            stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=0.1 * i))
        pending = stub.Rerank(task_request("geo", rng))  # feedback only after the restart
        before = stub.GetSelectorState(pb.GetSelectorStateRequest())
    assert first.stop() == 0, first.log_tail()

    second = ServerProcess(args, str(state), tmp_path / "second.log")
    try:
        with grpc.insecure_channel(second.start()) as channel:
            stub = rpc.LaserStub(channel)
            after = stub.GetSelectorState(pb.GetSelectorStateRequest())
            assert [(a.reward_model, a.pulls, a.mean_reward) for a in after.arms] == [
                (a.reward_model, a.pulls, a.mean_reward) for a in before.arms
            ]
            assert after.pending_selections == 1
            fb = stub.Feedback(pb.FeedbackRequest(selection_id=pending.selection_id, reward=1.0))
            assert fb.reward_model == pending.reward_models[0]
    finally:
        assert second.stop() == 0, second.log_tail()


def test_mismatched_state_refuses_to_start(tmp_path: Path) -> None:
    """A saved state for other RMs is an error that names the problem, never a reset."""
    state = tmp_path / "state"
    args = ["--config", str(light_config(tmp_path, TASKS)), "--generator", "hf"]
    first = ServerProcess(args, str(state), tmp_path / "first.log")
    first.start()
    assert first.stop() == 0
    other = ServerProcess(["--generator", "hf"], str(state), tmp_path / "other.log")
    try:
        other.start(timeout=300)
        raise AssertionError("server started on a mismatched state")
    except RuntimeError:
        pass
    assert other.proc is not None and other.proc.returncode == 2
    assert "does not match this configuration" in other.log_tail()
    assert "loaded reward model" not in other.log_tail()  # refused before loading any model


def test_auto_feedback_nll_rewards_without_labels(tmp_path: Path) -> None:
    """With auto_feedback = "nll" a request that expects no feedback teaches the selector at
    once with the chosen candidate's log-likelihood; one that expects feedback waits for it."""
    (tmp_path / "laser.toml").write_text(
        '[server]\nauto_feedback = "nll"\n[selector]\nreward_norm = "none"\n'
        '[[reward_models]]\nname = "sim"\nkind = "embedding"\n'
        'model = "builtin:all-minilm-l6-v2"\n'
    )
    server = ServerProcess(
        ["--config", str(tmp_path / "laser.toml"), "--generator", "hf"],
        str(tmp_path / "state"),
        tmp_path / "server.log",
    )
    with grpc.insecure_channel(server.start()) as channel:
        stub = rpc.LaserStub(channel)
        auto = stub.Rerank(rerank_request("Say hello.", n=2, max_tokens=6, seed=1))
        arm = stub.GetSelectorState(pb.GetSelectorStateRequest()).arms[0]
        assert arm.pulls == 1
        # the chosen candidate's mean log-prob, quantile-normalized into [0, 1]
        assert auto.candidates[auto.chosen_index].mean_logprob < 0
        assert 0.0 <= arm.mean_reward <= 1.0
        waits = stub.Rerank(
            rerank_request("Say bye.", n=2, max_tokens=6, seed=1, expect_feedback=True)
        )
        assert stub.GetSelectorState(pb.GetSelectorStateRequest()).arms[0].pulls == 1
        stub.Feedback(pb.FeedbackRequest(selection_id=waits.selection_id, reward=1.0))
        assert stub.GetSelectorState(pb.GetSelectorStateRequest()).arms[0].pulls == 2
        with pytest.raises(grpc.RpcError) as err:  # the auto-rewarded one is answered already
            stub.Feedback(pb.FeedbackRequest(selection_id=auto.selection_id, reward=1.0))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert server.stop() == 0
