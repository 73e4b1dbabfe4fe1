"""Rerank and Feedback against the real server (vLLM + embedded models) on 127.0.0.1."""

from __future__ import annotations

import math
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from laser_serve.api import pb, rpc
from laser_serve.client import Client, rerank_request
from laser_serve.server.testing import ServerProcess

RM_NAMES = {"smol-judge", "smol-loglik", "minilm-sim", "tiny-cls"}


def state_by_rm(stub: rpc.LaserStub) -> dict[str, pb.ArmState]:
    return {a.reward_model: a for a in stub.GetSelectorState(pb.GetSelectorStateRequest()).arms}


def test_rerank_generates_n_candidates(stub: rpc.LaserStub) -> None:
    resp = stub.Rerank(
        rerank_request(
            messages=[("user", "What is the capital of France?")],
            n=4,
            max_tokens=12,
            seed=7,
            temperature=0.8,
            return_all_scores=True,
        )
    )
    assert len(resp.selection_id) == 32
    assert len(resp.candidates) == 4
    assert resp.chosen_text == resp.candidates[resp.chosen_index].text
    assert len(resp.reward_models) == 1 and resp.reward_models[0] in RM_NAMES
    assert resp.policy == "linucb"
    for c in resp.candidates:
        assert c.finish_reason in ("stop", "length")
        assert 1 <= c.token_count <= 12
        assert math.isfinite(c.mean_logprob) and c.mean_logprob <= 0
        assert set(c.rm_scores) == set(resp.reward_models)
    best = max(range(4), key=lambda i: resp.candidates[i].score)
    assert resp.chosen_index == best
    assert resp.timings.generate_seconds > 0
    assert resp.timings.score_seconds > 0
    assert not resp.truncated


def metric_samples(server: ServerProcess) -> list[Sample]:
    """Every sample the server's Prometheus endpoint exposes now."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def wait_until_idle(server: ServerProcess, timeout: float = 60.0) -> None:
    """Wait until the shared server serves no request (an earlier test may have left one)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = metric_samples(server)
        inflight = next(s.value for s in samples if s.name == "laser_inflight_requests")
        if inflight == 0:
            return
        assert time.monotonic() < deadline, f"{inflight} requests still in flight"
        time.sleep(0.2)


def test_same_seed_same_candidates(server: ServerProcess, stub: rpc.LaserStub) -> None:
    # The seed contract holds while no other request shares vLLM's batches (laser.proto).
    texts = []
    for _ in range(2):
        wait_until_idle(server)
        resp = stub.Rerank(
            rerank_request("Name a colour.", n=3, max_tokens=8, seed=11, temperature=1.0)
        )
        texts.append([c.text for c in resp.candidates])
    assert texts[0] == texts[1]


def test_long_prompt_is_truncated_in_the_middle(stub: rpc.LaserStub) -> None:
    prompt = "Remember this. " * 2000 + "What should you do?"
    resp = stub.Rerank(rerank_request(prompt, n=1, max_tokens=4, policy="fixed:minilm-sim"))
    assert resp.truncated
    assert len(resp.candidates) == 1


def test_caller_candidates_skip_generation(stub: rpc.LaserStub) -> None:
    cands = ["Paris is the capital of France.", "I like turtles.", "Berlin."]
    resp = stub.Rerank(
        rerank_request(
            "What is the capital of France?",
            candidates=cands,
            policy="fixed:minilm-sim",
            return_all_scores=True,
            return_context=True,
        )
    )
    assert [c.text for c in resp.candidates] == cands
    assert all(c.finish_reason == "provided" for c in resp.candidates)
    assert resp.timings.generate_seconds == 0
    assert resp.reward_models == ["minilm-sim"]
    assert resp.chosen_index == 0  # the on-topic answer is most similar to the question
    assert len(resp.context) == 384


def test_ensemble_scores_with_every_rm(stub: rpc.LaserStub) -> None:
    resp = stub.Rerank(
        rerank_request(
            "What is 2 + 2?",
            candidates=["4", "5", "Four, because 2 + 2 = 4."],
            policy="ensemble",
            return_all_scores=True,
        )
    )
    assert set(resp.reward_models) == RM_NAMES
    assert set(resp.timings.rm_seconds) == RM_NAMES
    for c in resp.candidates:
        assert set(c.rm_scores) == RM_NAMES


def test_tiny_seq_cls_rm_loads_and_scores(stub: rpc.LaserStub) -> None:
    rms = {r.name: r for r in stub.ListRewardModels(pb.ListRewardModelsRequest()).reward_models}
    assert set(rms) == RM_NAMES
    assert rms["tiny-cls"].kind == "seq-cls"
    assert rms["tiny-cls"].device == "cpu"
    assert rms["tiny-cls"].memory_bytes > 0
    resp = stub.Rerank(
        rerank_request(
            "Say hi.",
            candidates=["hi", "hello there"],
            policy="fixed:tiny-cls",
            return_all_scores=True,
        )
    )
    scores = [c.rm_scores["tiny-cls"] for c in resp.candidates]
    assert all(math.isfinite(s) for s in scores) and scores[0] != scores[1]


def test_feedback_updates_state_and_metrics(stub: rpc.LaserStub, server) -> None:
    resp = stub.Rerank(rerank_request("Capital of Italy?", candidates=["Rome", "Milan"]))
    rm = resp.reward_models[0]
    before = state_by_rm(stub)[rm].pulls
    fb = stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=0.75))
    assert fb.reward_model == rm
    after = state_by_rm(stub)[rm]
    assert after.pulls == before + 1
    assert after.last_update_unix > 0
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in metric_samples(server)}
    assert samples[("laser_feedback_total", (("outcome", "applied"), ("reward_model", rm)))] >= 1
    assert samples[("laser_selector_pulls", (("reward_model", rm),))] == after.pulls


def test_feedback_twice_is_already_exists(stub: rpc.LaserStub) -> None:
    resp = stub.Rerank(rerank_request("Capital of Spain?", candidates=["Madrid", "Paris"]))
    stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=1.0))
    pulls = {k: v.pulls for k, v in state_by_rm(stub).items()}
    with pytest.raises(grpc.RpcError) as err:
        stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=1.0))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert {k: v.pulls for k, v in state_by_rm(stub).items()} == pulls


def test_unknown_selection_is_not_found(stub: rpc.LaserStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Feedback(pb.FeedbackRequest(selection_id="0" * 32, reward=1.0))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


BAD_REQUESTS = [
    ("prompt", rerank_request("")),
    ("prompt", rerank_request("hi", messages=[("user", "hi")])),
    ("messages[0].role", rerank_request(messages=[("robot", "hi")])),
    ("messages[0].content", rerank_request(messages=[("user", "")])),
    ("sampling.n", rerank_request("hi", n=1000)),
    ("sampling.temperature", rerank_request("hi", temperature=-1.0)),
    ("sampling.temperature", rerank_request("hi", temperature=float("nan"))),
    ("sampling.top_p", rerank_request("hi", top_p=0.0)),
    ("sampling.max_tokens", rerank_request("hi", max_tokens=100_000)),
    ("policy", rerank_request("hi", policy="greedy-magic")),
    ("policy", rerank_request("hi", policy="fixed:no-such-rm")),
    ("task", rerank_request("hi", task="not-allowed")),
    ("candidates", rerank_request("hi", candidates=["x"] * 1000)),
    ("candidates[1]", rerank_request("hi", candidates=["x", ""])),
    ("messages", rerank_request(messages=[("user", "x")] * 1000)),
]


@pytest.mark.parametrize(("field", "request_"), BAD_REQUESTS, ids=[f for f, _ in BAD_REQUESTS])
def test_invalid_rerank_names_the_field(stub: rpc.LaserStub, field: str, request_) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field + ":"), err.value.details()


@pytest.mark.parametrize(
    ("field", "selection_id", "reward"),
    [
        ("selection_id", "", 1.0),
        ("selection_id", "not-hex", 1.0),
        ("reward", "a" * 32, float("nan")),
        ("reward", "a" * 32, float("inf")),
    ],
)
def test_invalid_feedback_names_the_field(stub, field, selection_id, reward) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Feedback(pb.FeedbackRequest(selection_id=selection_id, reward=reward))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field + ":")


def test_health_and_reflection(server) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "laser.v1.Laser"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "laser.v1.Laser" in names and "grpc.health.v1.Health" in names


def test_metrics_exposition_has_the_documented_names(stub, server) -> None:
    stub.Rerank(rerank_request("Hello?", candidates=["Hi", "Bye"], task="geo"))
    with pytest.raises(grpc.RpcError):
        stub.Rerank(rerank_request(""))
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "laser_requests",
        "laser_request_duration_seconds",
        "laser_stage_duration_seconds",
        "laser_rm_selected",
        "laser_feedback",
        "laser_feedback_reward",
        "laser_selector_pulls",
        "laser_pending_selections",
        "laser_inflight_requests",
        "laser_generated_tokens",
    ):
        assert name in families, name
    assert 'laser_requests_total{code="INVALID_ARGUMENT",method="Rerank"}' in text
    assert 'laser_requests_total{code="OK",method="Rerank"}' in text
    for stage in ("encode", "select", "score"):
        assert f'laser_stage_duration_seconds_count{{stage="{stage}"}}' in text


def test_python_client(server) -> None:
    with Client(server.target, timeout=120) as laser:
        info = laser.server_info()
        assert info.generator == "vllm" and info.context_dim == 384
        r = laser.rerank("What is 1 + 1?", candidates=["2", "3"], policy="round-robin")
        assert r.policy == "round-robin"
        assert laser.feedback(r.selection_id, 1.0).reward_model == r.reward_models[0]


def test_deadline_stops_the_work_and_shows_in_metrics(stub: rpc.LaserStub, server) -> None:
    req = rerank_request("Write a long story about a dragon.", n=8, max_tokens=400, temperature=1.0)
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(req, timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server keeps serving and the cut stage is counted.
    resp = stub.Rerank(rerank_request("Hi?", candidates=["Hello", "Bye"]), timeout=120)
    assert resp.selection_id
    cut = [s for s in metric_samples(server) if s.name == "laser_stage_cut_total"]
    assert cut and sum(s.value for s in cut) >= 1
