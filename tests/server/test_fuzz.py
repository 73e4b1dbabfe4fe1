"""Random and malformed messages for every RPC get a well-formed status, never an uncaught
exception's UNKNOWN or INTERNAL; after them the selector state is finite and the server keeps
serving and choosing sensibly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverutil import LIGHT_ARMS, assert_state_finite, learns_favoured_arm, light_config

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import ServerProcess

METHODS = {m.name: m for m in pb.DESCRIPTOR.services_by_name["Laser"].methods}
WELL_FORMED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "\x00", "\ud7ff", "x" * 5000]))
numbers = st.floats(allow_nan=True, allow_infinity=True, width=32)
messages = st.lists(
    st.tuples(st.sampled_from(["user", "system", "assistant", "bot", ""]), texts), max_size=4
)


def call_raw(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    fn = channel.unary_unary(f"/laser.v1.Laser/{method}")  # bytes in, bytes out
    try:
        fn(payload, timeout=2)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=300))
def test_raw_bytes(server, stub: rpc.LaserStub, method: str, payload: bytes) -> None:
    with grpc.insecure_channel(server.target) as channel:
        assert call_raw(channel, method, payload) in WELL_FORMED
    assert_state_finite(stub)


@FUZZ
@given(
    prompt=texts,
    msgs=messages,
    n=st.integers(0, 2**32 - 1),
    temperature=numbers,
    top_p=numbers,
    max_tokens=st.integers(0, 2**32 - 1),
    candidates=st.lists(texts, max_size=80),
    policy=st.sampled_from(["", "linucb", "fixed:", "fixed:minilm-sim", "random", "nope", "\x00"]),
    task=st.sampled_from(["", "math", "unknown"]),
    stop=st.lists(texts, max_size=20),
)
def test_rerank_fields(
    stub: rpc.LaserStub,
    prompt,
    msgs,
    n,
    temperature,
    top_p,
    max_tokens,
    candidates,
    policy,
    task,
    stop,
) -> None:
    req = rerank_request(
        prompt or None,
        messages=msgs,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        candidates=candidates,
        policy=policy,
        task=task,
        stop=stop,
    )
    try:
        stub.Rerank(req, timeout=2)
    except grpc.RpcError as err:
        assert err.code() in WELL_FORMED, err.details()
    assert_state_finite(stub)


@FUZZ
@given(selection_id=texts, reward=st.floats(allow_nan=True, allow_infinity=True))
def test_feedback_fields(stub: rpc.LaserStub, selection_id: str, reward: float) -> None:
    try:
        stub.Feedback(pb.FeedbackRequest(selection_id=selection_id, reward=reward), timeout=2)
    except grpc.RpcError as err:
        assert err.code() in WELL_FORMED, err.details()
    assert_state_finite(stub)


@pytest.fixture(scope="module", params=["none", "quantile"])
def light(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[rpc.LaserStub]:
    """A server of its own (the feedback below teaches its selector), per reward_norm: the
    reward contract refuses out-of-range rewards, quantile normalization accepts them."""
    tmp: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    config = light_config(tmp, f'[selector]\nreward_norm = "{request.param}"\n')
    server = ServerProcess(
        ["--config", str(config), "--generator", "hf"], str(tmp / "s"), tmp / "log"
    )
    with grpc.insecure_channel(server.start(timeout=300)) as channel:
        stub = rpc.LaserStub(channel)
        stub.reward_norm = request.param  # type: ignore[attr-defined]
        yield stub
    assert server.stop() == 0, server.log_tail()


rewards = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, 0.0, 1.0]),
)


@settings(FUZZ, max_examples=40)
@given(
    policy=st.sampled_from(
        ["", "random", "round-robin", "ensemble", *(f"fixed:{a}" for a in LIGHT_ARMS)]
    ),
    reward=rewards,
    again=st.one_of(st.none(), rewards),
)
def test_feedback_on_real_selections_keeps_the_state_finite(light, policy, reward, again) -> None:
    """Any reward, for selections of any policy, twice or once: the statuses are well formed
    and every statistic stays finite."""
    resp = light.Rerank(
        rerank_request("Fuzz me?", candidates=["a", "b"], policy=policy), timeout=60
    )
    for r in (reward, again):
        if r is None:
            continue
        try:
            light.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=r), timeout=10)
        except grpc.RpcError as err:
            assert err.code() in WELL_FORMED, err.details()
    assert_state_finite(light)


def test_light_server_still_chooses_sensibly_after_the_fuzz(light) -> None:
    if light.reward_norm == "none":  # the contract kept every extreme reward out
        assert learns_favoured_arm(light, "sim-c") >= 0.8
    else:  # extremes fill the quantile window: learning waits until they leave it
        for _ in range(6):
            resp = light.Rerank(rerank_request("Still sensible?", candidates=["a", "b"]))
            assert len(resp.reward_models) == 1 and resp.reward_models[0] in LIGHT_ARMS
    assert_state_finite(light)


def test_invalid_utf8_is_invalid_argument(server) -> None:
    # field 1 (prompt), wire type 2, length 2, bytes that are not UTF-8
    with grpc.insecure_channel(server.target) as channel:
        assert call_raw(channel, "Rerank", b"\x0a\x02\xff\xfe") == grpc.StatusCode.INVALID_ARGUMENT


def test_still_serving_after_the_fuzz(stub: rpc.LaserStub) -> None:
    resp = stub.Rerank(rerank_request("Still there?", candidates=["yes", "no"]), timeout=120)
    assert resp.selection_id
