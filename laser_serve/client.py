"""Typed Python client for applications: `Client` (blocking) and `AsyncClient` (asyncio).

from laser_serve.client import Client
with Client("127.0.0.1:50051") as laser:
    r = laser.rerank("What is the capital of France?", n=4)
    laser.feedback(r.selection_id, reward=1.0)

Both retry a call answered UNAVAILABLE (a server still loading its models, a dropped
connection) or RESOURCE_EXHAUSTED (overload, a rate limit) up to 4 times with exponential
backoff, through gRPC's own retry policy (``retry=False`` turns it off; a
``grpc.service_config`` in ``options`` replaces it). A Feedback retried after its reply was
lost answers ALREADY_EXISTS: the earlier attempt was applied. ``token`` sends a bearer token
with every call; ``rerank`` takes a prompt and keyword fields, or a built RerankRequest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import grpc

from laser_serve.api import SERVICE_NAME, pb, rpc

RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
}
SERVICE_CONFIG = json.dumps(
    {"methodConfig": [{"name": [{"service": SERVICE_NAME}], "retryPolicy": RETRY_POLICY}]}
)

Messages = Sequence[tuple[str, str] | dict[str, str]]


def rerank_request(
    prompt: str | None = None,
    *,
    messages: Messages | None = None,
    n: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int = 0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    candidates: Sequence[str] = (),
    context_text: str = "",
    policy: str = "",
    task: str = "",
    return_all_scores: bool = False,
    return_context: bool = False,
    score_with_all: bool = False,
    expect_feedback: bool = False,
) -> pb.RerankRequest:
    """Build a RerankRequest; unset sampling values take the server's defaults."""
    sampling = pb.SamplingParams(n=n, max_tokens=max_tokens, stop=list(stop))
    if temperature is not None:
        sampling.temperature = temperature
    if top_p is not None:
        sampling.top_p = top_p
    if seed is not None:
        sampling.seed = seed
    msgs = [
        pb.Message(**m) if isinstance(m, dict) else pb.Message(role=m[0], content=m[1])
        for m in messages or ()
    ]
    return pb.RerankRequest(
        prompt=prompt or "",
        messages=msgs,
        sampling=sampling,
        candidates=list(candidates),
        context_text=context_text,
        policy=policy,
        task=task,
        return_all_scores=return_all_scores,
        return_context=return_context,
        score_with_all=score_with_all,
        expect_feedback=expect_feedback,
    )


class _Channel:
    """A channel to one server with the retry policy, and its Laser stub."""

    _grpc: ModuleType  # grpc or grpc.aio

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
        retry: bool = True,
        token: str = "",
    ) -> None:
        opts = list(options)
        if retry and not any(key == "grpc.service_config" for key, _ in opts):
            opts += [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        if credentials:
            self.channel = self._grpc.secure_channel(target, credentials, options=opts)
        else:
            self.channel = self._grpc.insecure_channel(target, options=opts)
        self.stub = rpc.LaserStub(self.channel)
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    def _call(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "metadata": self.metadata}


def _as_request(prompt: str | pb.RerankRequest | None, kwargs: dict[str, Any]) -> Any:
    if isinstance(prompt, pb.RerankRequest):
        if kwargs:
            raise TypeError("pass either a RerankRequest or a prompt with fields, not both")
        return prompt
    return rerank_request(prompt, **kwargs)


class Client(_Channel):
    _grpc = grpc

    def rerank(
        self, prompt: str | pb.RerankRequest | None = None, **kwargs: Any
    ) -> pb.RerankResponse:
        return self.stub.Rerank(_as_request(prompt, kwargs), **self._call())

    def feedback(self, selection_id: str, reward: float) -> pb.FeedbackResponse:
        return self.stub.Feedback(
            pb.FeedbackRequest(selection_id=selection_id, reward=reward), **self._call()
        )

    def selector_state(self) -> pb.SelectorState:
        return self.stub.GetSelectorState(pb.GetSelectorStateRequest(), **self._call())

    def reward_models(self) -> list[pb.RewardModelInfo]:
        resp = self.stub.ListRewardModels(pb.ListRewardModelsRequest(), **self._call())
        return list(resp.reward_models)

    def server_info(self) -> pb.ServerInfo:
        return self.stub.GetServerInfo(pb.GetServerInfoRequest(), **self._call())

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Channel):
    _grpc = grpc.aio

    async def rerank(
        self, prompt: str | pb.RerankRequest | None = None, **kwargs: Any
    ) -> pb.RerankResponse:
        return await self.stub.Rerank(_as_request(prompt, kwargs), **self._call())

    async def feedback(self, selection_id: str, reward: float) -> pb.FeedbackResponse:
        return await self.stub.Feedback(
            pb.FeedbackRequest(selection_id=selection_id, reward=reward), **self._call()
        )

    async def selector_state(self) -> pb.SelectorState:
        return await self.stub.GetSelectorState(pb.GetSelectorStateRequest(), **self._call())

    async def reward_models(self) -> list[pb.RewardModelInfo]:
        resp = await self.stub.ListRewardModels(pb.ListRewardModelsRequest(), **self._call())
        return list(resp.reward_models)

    async def server_info(self) -> pb.ServerInfo:
        return await self.stub.GetServerInfo(pb.GetServerInfoRequest(), **self._call())

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
