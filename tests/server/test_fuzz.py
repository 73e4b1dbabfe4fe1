"""Random and malformed messages for every RPC get a well-formed status, never an uncaught
exception's UNKNOWN or INTERNAL, and the server keeps serving."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request

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
def test_raw_bytes(server, method: str, payload: bytes) -> None:
    with grpc.insecure_channel(server.target) as channel:
        assert call_raw(channel, method, payload) in WELL_FORMED


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


@FUZZ
@given(selection_id=texts, reward=st.floats(allow_nan=True, allow_infinity=True))
def test_feedback_fields(stub: rpc.LaserStub, selection_id: str, reward: float) -> None:
    try:
        stub.Feedback(pb.FeedbackRequest(selection_id=selection_id, reward=reward), timeout=2)
    except grpc.RpcError as err:
        assert err.code() in WELL_FORMED, err.details()


def test_invalid_utf8_is_invalid_argument(server) -> None:
    # field 1 (prompt), wire type 2, length 2, bytes that are not UTF-8
    with grpc.insecure_channel(server.target) as channel:
        assert call_raw(channel, "Rerank", b"\x0a\x02\xff\xfe") == grpc.StatusCode.INVALID_ARGUMENT


def test_still_serving_after_the_fuzz(stub: rpc.LaserStub) -> None:
    resp = stub.Rerank(rerank_request("Still there?", candidates=["yes", "no"]), timeout=120)
    assert resp.selection_id
