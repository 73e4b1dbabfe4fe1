"""The Python client retries UNAVAILABLE and RESOURCE_EXHAUSTED with backoff (gRPC's retry
policy), against a real gRPC server on 127.0.0.1 that fails the first calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from laser_serve.api import pb, rpc
from laser_serve.client import AsyncClient, Client


class Flaky(rpc.LaserServicer):
    """Answers Feedback with the given codes first, then OK."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.calls = 0

    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext):
        self.calls += 1
        if self.failures:
            context.abort(self.failures.pop(0), "try again")
        return pb.FeedbackResponse(reward_model="rm", normalized_reward=request.reward)


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc.add_LaserServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


CODES = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_retries_unavailable_and_resource_exhausted(flaky) -> None:
    servicer, target = flaky
    servicer.failures, servicer.calls = list(CODES) + [grpc.StatusCode.UNAVAILABLE], 0
    with Client(target, timeout=30) as laser:
        assert laser.feedback("a" * 32, 0.5).normalized_reward == 0.5
    assert servicer.calls == 4  # three failures, then the answer


def test_async_client_retries_too(flaky) -> None:
    servicer, target = flaky
    servicer.failures, servicer.calls = list(CODES), 0

    async def call() -> float:
        async with AsyncClient(target, timeout=30) as laser:
            return (await laser.feedback("a" * 32, 0.25)).normalized_reward

    assert asyncio.run(call()) == 0.25
    assert servicer.calls == 3


def test_other_codes_and_retry_false_are_not_retried(flaky) -> None:
    servicer, target = flaky
    for retry, failures in ((True, [grpc.StatusCode.INVALID_ARGUMENT]), (False, CODES[:1])):
        servicer.failures, servicer.calls = list(failures), 0
        with Client(target, timeout=30, retry=retry) as laser, pytest.raises(grpc.RpcError) as err:
            laser.feedback("a" * 32, 0.5)
        assert err.value.code() == failures[0] and servicer.calls == 1


def test_retries_give_up_after_four_attempts(flaky) -> None:
    servicer, target = flaky
    servicer.failures, servicer.calls = [grpc.StatusCode.UNAVAILABLE] * 5, 0
    with Client(target, timeout=30) as laser, pytest.raises(grpc.RpcError) as err:
        laser.feedback("a" * 32, 0.5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and servicer.calls == 4
