"""Issue #15's reproduction over gRPC: rewards of 1e308 for one arm cannot lock LinUCB onto
it. Under the default reward range they are refused; with quantile normalization they are
accepted and the state stays finite. Either way LinUCB then learns the arm that the rest of
the feedback favours."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serverutil import assert_state_finite, learns_favoured_arm, light_config

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import ServerProcess


@pytest.mark.parametrize("reward_norm", ["none", "quantile"])
def test_huge_rewards_do_not_lock_the_bandit(tmp_path: Path, reward_norm: str) -> None:
    config = light_config(tmp_path, f'[selector]\nreward_norm = "{reward_norm}"\n')
    server = ServerProcess(
        ["--config", str(config), "--generator", "hf"], str(tmp_path / "state"), tmp_path / "log"
    )
    with grpc.insecure_channel(server.start(timeout=300)) as channel:
        stub = rpc.LaserStub(channel)
        for _ in range(3):
            resp = stub.Rerank(
                rerank_request(
                    "What is the capital of France?",
                    candidates=["Paris", "Lyon"],
                    policy="fixed:sim-a",
                    expect_feedback=True,
                )
            )
            request = pb.FeedbackRequest(selection_id=resp.selection_id, reward=1e308)
            if reward_norm == "none":
                with pytest.raises(grpc.RpcError) as err:
                    stub.Feedback(request)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.value.details().startswith("reward: 1e+308 is outside")
                assert "selector.reward_range [0, 1]" in err.value.details()
            else:
                assert stub.Feedback(request).reward_model == "sim-a"
        assert_state_finite(stub)
        pulls = {
            a.reward_model: a.pulls
            for a in stub.GetSelectorState(pb.GetSelectorStateRequest()).arms
        }
        assert pulls["sim-a"] == (0 if reward_norm == "none" else 3)
        assert learns_favoured_arm(stub, "sim-b") >= 0.8
        assert_state_finite(stub)
        text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    assert server.stop() == 0, server.log_tail()
    rejected = sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "laser_feedback_total" and s.labels["outcome"] == "rejected"
    )
    assert rejected == (3 if reward_norm == "none" else 0)
