"""generate → encode → select → score → choose: the one composition of the pieces.

The server, `laser-bench` and `laser-train` call this module; none of them re-implements it.
Torch work (encoder, RMs, hf generation) runs on the single torch thread, the encoder's and
each RM's work batched across concurrent requests (`laser_serve.batching`); vLLM runs in its
own engine process and batches concurrent requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laser_serve.batching import Batcher
from laser_serve.config import Config
from laser_serve.context import ContextEncoder, PolicyContext, SentenceContext
from laser_serve.devices import default_device, torch_executor
from laser_serve.generation import (
    Candidate,
    Generator,
    Prompt,
    PromptBuilder,
    Sampling,
    make_generator,
)
from laser_serve.models import policy_tokenizer
from laser_serve.rewards import RewardModel, ScoreRequest, make_reward_model
from laser_serve.selector import Decision, Policy, combine_scores

log = logging.getLogger(__name__)


@dataclass
class RerankInput:
    prompt: str | None
    messages: list[dict[str, str]] | None
    sampling: Sampling
    candidates: list[str] = field(default_factory=list)  # caller-provided: nothing generated
    context_text: str = ""
    score_with_all: bool = False  # score with every RM (benches); the policy still chooses


@dataclass
class Trace:
    """The stage a request is in, so a deadline or cancellation can say what it cut."""

    stage: str = "prepare"


@dataclass
class RerankResult:
    candidates: list[Candidate]
    chosen_index: int
    arms: tuple[int, ...]  # arm indices whose scores chose
    decision: Decision  # the policy's choice with p(·|x), for the decision log
    scores: np.ndarray  # the choosing score per candidate
    rm_scores: dict[str, np.ndarray]  # raw scores by RM name
    rm_seconds: dict[str, float]
    context: np.ndarray
    truncated: bool
    timings: dict[str, float]  # generate, encode, select, score


class Pipeline:
    def __init__(
        self,
        config: Config,
        generator: Generator,
        prompts: PromptBuilder,
        encoder: ContextEncoder,
        reward_models: list[RewardModel],
    ) -> None:
        self.config = config
        self.generator = generator
        self.prompts = prompts
        self.encoder = encoder
        self.reward_models = reward_models
        self.arms = config.arms
        # Concurrent requests' model work runs in shared batches on the one torch thread.
        s = config.server
        batching = functools.partial(
            Batcher,
            executor=torch_executor(),
            max_batch=s.max_batch,
            max_wait_s=s.batch_wait_s,
            max_queue_s=s.max_queue_s,
        )
        self.encode_batcher: Batcher[tuple[list[int], str, str], np.ndarray] = batching(
            "encoder", encoder.encode_batch
        )
        self.score_batchers: list[Batcher[Any, np.ndarray]] = [
            batching(rm.name, rm.score_batch, max_batch_cost=s.max_batch_tokens)
            for rm in reward_models
        ]

    @classmethod
    async def load(cls, config: Config) -> Pipeline:
        """Load every model (RMs stay resident) and start the generator."""
        loop = asyncio.get_running_loop()

        def load_torch_models() -> tuple[PromptBuilder, ContextEncoder, list[RewardModel]]:
            started = time.monotonic()
            rms = []
            for rm_config in config.reward_models:
                t = time.monotonic()
                rms.append(make_reward_model(rm_config))
                log.info(
                    "loaded reward model %s (%s, %s) on %s in %.1fs",
                    rm_config.name,
                    rm_config.kind,
                    rm_config.model,
                    rms[-1].device,
                    time.monotonic() - t,
                )
            encoder = load_encoder(config)
            tokenizer = policy_tokenizer(config.generator.model)
            log.info(
                "loaded context encoder %s (dim %d) in %.1fs total",
                encoder.name,
                encoder.dim,
                time.monotonic() - started,
            )
            return PromptBuilder(tokenizer, config.generator.max_model_len), encoder, rms

        prompts, encoder, rms = await loop.run_in_executor(torch_executor(), load_torch_models)
        generator = make_generator(config.generator)
        await generator.start()
        return cls(config, generator, prompts, encoder, rms)

    async def close(self) -> None:
        await self.generator.close()

    def prepare(
        self, prompt: str | None, messages: list[dict[str, str]] | None, max_tokens: int
    ) -> Prompt:
        return self.prompts.build(prompt, messages, max_tokens)

    async def rerank(
        self, request: RerankInput, policy: Policy, request_id: str, trace: Trace | None = None
    ) -> RerankResult:
        """Cancelling the calling task stops the work: a queued torch job never starts and the
        vLLM request is aborted."""
        trace = trace or Trace()
        timings = {"generate": 0.0, "encode": 0.0, "select": 0.0, "score": 0.0}
        prompt = self.prepare(request.prompt, request.messages, request.sampling.max_tokens)
        # RMs see what the policy saw: the cut prompt, as chat turns when it came as chat.
        messages = prompt.messages or [{"role": "user", "content": prompt.text}]
        question = request.context_text

        trace.stage = "encode"
        t = time.perf_counter()
        x, _ = await self.encode_batcher.submit((prompt.token_ids, prompt.text, question))
        timings["encode"] = time.perf_counter() - t

        trace.stage = "select"
        t = time.perf_counter()
        decision = policy.decide(x)
        arms = decision.arms
        timings["select"] = time.perf_counter() - t

        if request.candidates:
            candidates = [
                Candidate(
                    c,
                    len(self.prompts.tokenizer(c, add_special_tokens=False)["input_ids"]),
                    "provided",
                )
                for c in request.candidates
            ]
        else:
            trace.stage = "generate"
            t = time.perf_counter()
            candidates = await self.generator.generate(prompt, request.sampling, request_id)
            timings["generate"] = time.perf_counter() - t

        scoring = range(len(self.reward_models)) if request.score_with_all else arms
        score_request = ScoreRequest(
            messages, [c.text for c in candidates], question or _tail(prompt.text)
        )
        trace.stage = "score"
        t = time.perf_counter()
        cost = request_cost(prompt, candidates)
        scored = await asyncio.gather(
            *(self.score_batchers[a].submit(score_request, cost) for a in scoring)
        )
        names = [self.arms[a] for a in scoring]
        rm_scores = {
            n: np.asarray(v, dtype=np.float64) for n, (v, _) in zip(names, scored, strict=True)
        }
        rm_seconds = {n: sec for n, (_, sec) in zip(names, scored, strict=True)}
        timings["score"] = time.perf_counter() - t

        chosen_index, chosen_scores = choose_candidate(rm_scores, [self.arms[a] for a in arms])
        return RerankResult(
            candidates=candidates,
            chosen_index=chosen_index,
            arms=tuple(arms),
            decision=decision,
            scores=chosen_scores,
            rm_scores=rm_scores,
            rm_seconds=rm_seconds,
            context=x,
            truncated=prompt.truncated,
            timings=timings,
        )


def request_cost(prompt: Prompt, candidates: Sequence[Candidate]) -> int:
    """A scoring request's cost as the RM schedulers count it (`server.max_batch_tokens`):
    the policy's templated prompt tokens plus the candidates' tokens, what an RM's
    forward grows with."""
    return len(prompt.token_ids) + sum(c.token_count for c in candidates)


def load_encoder(config: Config) -> ContextEncoder:
    """The configured context encoder (blocking: call on the torch thread)."""
    ctx, device = config.context, default_device()
    if ctx.encoder == "policy":
        return PolicyContext(config.generator.model, device)
    return SentenceContext(ctx.model, device, ctx.tail_tokens)


def score_candidates(
    rms: Sequence[RewardModel], request: ScoreRequest
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every given RM's scores of the request's candidates, and the seconds each took. The
    one scoring path of the server, the benches and laser-train (blocking: torch thread)."""
    scores, seconds = {}, {}
    for rm in rms:
        t = time.perf_counter()
        scores[rm.name] = np.asarray(rm.score(request), dtype=np.float64)
        seconds[rm.name] = time.perf_counter() - t
    return scores, seconds


def choose_candidate(
    rm_scores: Mapping[str, np.ndarray], names: Sequence[str]
) -> tuple[int, np.ndarray]:
    """The chosen candidate under the RMs `names` and its choosing scores: one RM's own
    scores, or the ensemble's combined z-scores for several. Ties go to the first."""
    chosen = (
        np.asarray(rm_scores[names[0]], dtype=np.float64)
        if len(names) == 1
        else combine_scores(np.stack([rm_scores[n] for n in names]))
    )
    return int(np.argmax(chosen)), chosen


def _tail(text: str, chars: int = 2000) -> str:
    return text[-chars:]
