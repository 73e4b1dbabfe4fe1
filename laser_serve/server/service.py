"""The laser.v1.Laser servicer: validation, the pipeline, the learner, metrics, statuses.

Every handler goes through `_handle`, which maps errors to gRPC codes (never a bare UNKNOWN),
enforces the in-flight limit and records request metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from laser_serve import __version__
from laser_serve.api import SERVICE_NAME, pb, rpc
from laser_serve.config import Config
from laser_serve.errors import ConfigError, Overloaded
from laser_serve.generation import PromptError
from laser_serve.pipeline import Pipeline, RerankInput, RerankResult, Trace
from laser_serve.server.auth import TokenSource
from laser_serve.server.learning import AlreadyAnswered, Learner, NotFound, Unavailable
from laser_serve.server.metrics import Metrics
from laser_serve.server.validation import InvalidArgument, parse_feedback, parse_rerank

log = logging.getLogger(__name__)
T = TypeVar("T")


class Malformed:
    """Stands in for a request whose bytes are not a valid message of its type."""

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name, self.error = type_name, error


def _parse(cls: Any, data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except Exception as exc:  # DecodeError, invalid UTF-8, ...: the caller's fault
        return Malformed(cls.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)


class RateLimit:
    """A token bucket per key (a bearer token's name): ``rate`` calls per second on average,
    bursts of up to 10 seconds' worth. rate 0: no limit."""

    BURST_S = 10.0

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now, capacity = time.monotonic(), max(1.0, self.rate * self.BURST_S)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


def add_to_server(service: LaserService, server: grpc.aio.Server) -> None:
    """Register the Laser methods with deserializers that turn malformed bytes into
    INVALID_ARGUMENT (gRPC's own would answer INTERNAL)."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Laser"].methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(service, method.name),
            request_deserializer=functools.partial(_parse, request_cls),
            response_serializer=response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def _handle(method: str) -> Callable[..., Any]:
    def decorate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(self: LaserService, request: Any, context: grpc.aio.ServicerContext) -> T:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if isinstance(request, Malformed):
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    await context.abort(
                        code, f"request: not a valid {request.type_name} message: {request.error}"
                    )
                if self.pipeline is None:
                    code = grpc.StatusCode.UNAVAILABLE
                    await context.abort(code, "models are still loading; retry shortly")
                return await fn(self, request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                raise
            except (InvalidArgument, PromptError, ConfigError) as exc:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(exc))
            except NotFound as exc:
                code = grpc.StatusCode.NOT_FOUND
                await context.abort(code, f"selection_id {exc} is unknown or expired")
            except AlreadyAnswered as exc:
                code = grpc.StatusCode.ALREADY_EXISTS
                await context.abort(code, f"selection_id {exc} already received feedback")
            except Overloaded as exc:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(code, str(exc))
            except Unavailable as exc:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, str(exc))
            except Exception as exc:  # a bug or a model failure: say so, keep serving
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", method)
                if self.pipeline is not None and not self.pipeline.generator.healthy():
                    # The engine is gone: stop (state saved) so a supervisor restarts us.
                    code = grpc.StatusCode.UNAVAILABLE
                    self.fatal.set()
                await context.abort(code, f"internal error in {method}: {type(exc).__name__}")
            finally:
                self.metrics.requests.labels(method, code.name).inc()
                self.metrics.request_duration.labels(method).observe(time.perf_counter() - started)
            raise AssertionError("unreachable")

        return wrapper

    return decorate


class LaserService(rpc.LaserServicer):
    def __init__(self, config: Config, metrics: Metrics, tokens: TokenSource | None = None):
        self.config = config
        self.metrics = metrics
        self.tokens = tokens if tokens is not None and tokens.enabled else None
        self.pipeline: Pipeline | None = None
        self.learner: Learner | None = None
        self._inflight = 0
        self._feedback_rate = RateLimit(config.server.feedback_rate_per_token)
        self.fatal = asyncio.Event()  # set when the server can no longer serve

    def attach(self, pipeline: Pipeline, learner: Learner) -> None:
        self.learner = learner
        self.pipeline = pipeline

    @_handle("Rerank")
    async def Rerank(self, request: pb.RerankRequest, context: Any) -> pb.RerankResponse:
        assert self.pipeline is not None and self.learner is not None
        if self._inflight >= self.config.server.max_inflight:
            raise Overloaded(
                f"{self._inflight} requests in flight (server.max_inflight); retry with backoff"
            )
        self._inflight += 1
        self.metrics.inflight.inc()
        try:
            return await self._rerank(request)
        finally:
            self._inflight -= 1
            self.metrics.inflight.dec()

    async def _rerank(self, request: pb.RerankRequest) -> pb.RerankResponse:
        assert self.pipeline is not None and self.learner is not None
        started = time.perf_counter()
        inp = parse_rerank(request, self.config)
        try:
            policy = self.learner.policy_for(request.policy)
        except ValueError as exc:
            raise InvalidArgument("policy", str(exc)) from None
        trace = Trace()
        try:
            result = await self.pipeline.rerank(inp, policy, uuid.uuid4().hex, trace)
        except asyncio.CancelledError:  # client deadline or cancellation
            self.metrics.stage_cut.labels(trace.stage).inc()
            raise
        # Off the event loop: the journal write, or with a cluster the Redis write.
        selection_id = await asyncio.get_running_loop().run_in_executor(
            None,
            self.learner.record,
            policy,
            result.decision,
            result.context,
            len(result.candidates),
            result.chosen_index,
            request.expect_feedback,
            result.candidates[result.chosen_index].mean_logprob,
        )
        self._observe(request, inp, policy.name, result)
        response = self._response(request, policy.name, result, selection_id)
        response.timings.total_seconds = time.perf_counter() - started
        return response

    def _observe(
        self, request: pb.RerankRequest, inp: RerankInput, policy: str, result: RerankResult
    ) -> None:
        m = self.metrics
        for stage, seconds in result.timings.items():
            if stage != "generate" or not inp.candidates:
                m.stage_duration.labels(stage).observe(seconds)
        for a in result.arms:
            m.rm_selected.labels(self._arm_name(a), policy).inc()
        for name, seconds in result.rm_seconds.items():
            m.rm_score_duration.labels(name).observe(seconds)
        if not inp.candidates:
            m.generated_tokens.inc(sum(c.token_count for c in result.candidates))
        m.rerank_tasks.labels(request.task or "default").inc()

    def _arm_name(self, arm: int) -> str:
        assert self.pipeline is not None
        return self.pipeline.arms[arm]

    def _response(
        self, request: pb.RerankRequest, policy: str, result: RerankResult, selection_id: str
    ) -> pb.RerankResponse:
        candidates = []
        for i, c in enumerate(result.candidates):
            msg = pb.Candidate(
                text=c.text,
                token_count=c.token_count,
                finish_reason=c.finish_reason,
                mean_logprob=c.mean_logprob,
            )
            if request.return_all_scores:
                msg.score = float(result.scores[i])
                for name, scores in result.rm_scores.items():
                    msg.rm_scores[name] = float(scores[i])
            candidates.append(msg)
        t = result.timings
        response = pb.RerankResponse(
            selection_id=selection_id,
            chosen_index=result.chosen_index,
            chosen_text=result.candidates[result.chosen_index].text,
            reward_models=[self._arm_name(a) for a in result.arms],
            policy=policy,
            candidates=candidates,
            timings=pb.StageTimings(
                generate_seconds=t["generate"],
                encode_seconds=t["encode"],
                select_seconds=t["select"],
                score_seconds=t["score"],
                rm_seconds=result.rm_seconds,
            ),
            truncated=result.truncated,
        )
        if request.return_context:
            response.context.extend(float(v) for v in result.context)
        return response

    @_handle("Feedback")
    async def Feedback(self, request: pb.FeedbackRequest, context: Any) -> pb.FeedbackResponse:
        assert self.learner is not None
        selection_id, reward = parse_feedback(request)
        token = ""
        if self.tokens is not None:  # the interceptor let the call in: its token matches
            token = self.tokens.match(context.invocation_metadata()) or ""
        if not self._feedback_rate.allow(token):
            raise Overloaded(
                f"more than {self.config.server.feedback_rate_per_token:g} Feedback calls per "
                "second with this token (server.feedback_rate_per_token); retry with backoff"
            )
        loop = asyncio.get_running_loop()
        # Journal fsync happens inside: keep it off the event loop.
        credited, normalized = await loop.run_in_executor(
            None, self.learner.feedback, selection_id, reward, token
        )
        return pb.FeedbackResponse(
            reward_model=credited,
            normalized_reward=normalized if math.isfinite(normalized) else 0.0,
        )

    @_handle("GetSelectorState")
    async def GetSelectorState(self, request: Any, context: Any) -> pb.SelectorState:
        assert self.learner is not None
        policy = self.learner.policy
        return pb.SelectorState(
            policy=policy.name,
            params={k: str(v) for k, v in policy.params().items()},
            arms=[
                pb.ArmState(
                    reward_model=s.name,
                    pulls=s.pulls,
                    selections=s.selections,
                    mean_reward=s.mean_reward,
                    last_update_unix=s.last_update,
                )
                for s in policy.stats()
            ],
            pending_selections=len(self.learner.pending),
        )

    @_handle("ListRewardModels")
    async def ListRewardModels(self, request: Any, context: Any) -> pb.ListRewardModelsResponse:
        assert self.pipeline is not None
        return pb.ListRewardModelsResponse(
            reward_models=[
                pb.RewardModelInfo(
                    name=rm.name,
                    kind=rm.kind,
                    device=rm.device,
                    max_length=rm.max_length,
                    memory_bytes=rm.memory_bytes(),
                    model=rm.model,
                )
                for rm in self.pipeline.reward_models
            ]
        )

    @_handle("GetServerInfo")
    async def GetServerInfo(self, request: Any, context: Any) -> pb.ServerInfo:
        assert self.pipeline is not None
        c = self.config
        return pb.ServerInfo(
            version=__version__,
            policy_model=c.generator.model,
            generator=self.pipeline.generator.name,
            context_encoder=self.pipeline.encoder.name,
            context_dim=self.pipeline.encoder.dim,
            policy=c.selector.policy,
            max_n=c.server.max_n,
            max_model_len=c.generator.max_model_len,
            tasks=c.server.tasks,
        )
