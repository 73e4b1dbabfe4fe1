"""Request validation: every bad field becomes InvalidArgument naming that field."""

from __future__ import annotations

import math
import re

from laser_serve.api import pb
from laser_serve.config import Config, ServerConfig
from laser_serve.errors import InvalidArgument
from laser_serve.generation import MIN_PROMPT_TOKENS, Sampling
from laser_serve.pipeline import RerankInput

ROLES = ("system", "user", "assistant")
MAX_STOP_STRINGS = 16
SELECTION_ID = re.compile(r"^[0-9a-f]{32}$")


def _require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise InvalidArgument(field, problem)


def parse_rerank(request: pb.RerankRequest, config: Config) -> RerankInput:
    s = config.server
    messages = _messages(request, s)
    _require(
        len(request.context_text) <= s.max_prompt_chars,
        "context_text",
        f"exceeds the limit of {s.max_prompt_chars} characters",
    )
    candidates = _candidates(request, s)
    sampling = _sampling(request.sampling, config)
    _require(
        not request.task or request.task in s.tasks,
        "task",
        f"{request.task!r} is not an allowed task; allowed: {', '.join(s.tasks)}",
    )
    return RerankInput(
        prompt=None if messages else request.prompt,
        messages=messages or None,
        sampling=sampling,
        candidates=candidates,
        context_text=request.context_text,
        score_with_all=request.score_with_all,
    )


def _messages(request: pb.RerankRequest, s: ServerConfig) -> list[dict[str, str]]:
    """The chat messages (empty for a plain prompt, which is checked here too)."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if not messages:
        _require(bool(request.prompt.strip()), "prompt", "must not be empty (or send messages)")
        _require(
            len(request.prompt) <= s.max_prompt_chars,
            "prompt",
            f"{len(request.prompt)} characters exceed the limit of {s.max_prompt_chars}",
        )
        return messages
    _require(not request.prompt, "prompt", "give either prompt or messages, not both")
    _require(
        len(messages) <= s.max_messages,
        "messages",
        f"at most {s.max_messages} messages are allowed, got {len(messages)}",
    )
    for i, m in enumerate(messages):
        _require(m["role"] in ROLES, f"messages[{i}].role", f"must be one of {ROLES}")
        _require(bool(m["content"].strip()), f"messages[{i}].content", "must not be empty")
    _require(
        messages[-1]["role"] != "assistant",
        "messages",
        "the last message must be from the user or system, not the assistant",
    )
    size = sum(len(m["content"]) for m in messages)
    _require(
        size <= s.max_prompt_chars,
        "messages",
        f"{size} characters exceed the limit of {s.max_prompt_chars}",
    )
    return messages


def _candidates(request: pb.RerankRequest, s: ServerConfig) -> list[str]:
    candidates = list(request.candidates)
    _require(
        len(candidates) <= s.max_candidates,
        "candidates",
        f"at most {s.max_candidates} candidates are allowed, got {len(candidates)}",
    )
    for i, c in enumerate(candidates):
        _require(bool(c.strip()), f"candidates[{i}]", "must not be empty")
        _require(len(c) <= s.max_prompt_chars, f"candidates[{i}]", "is too long")
    return candidates


def _sampling(sp: pb.SamplingParams, config: Config) -> Sampling:
    """Sampling parameters, unset ones from the generator defaults."""
    s, g = config.server, config.generator
    n = sp.n or g.default_n
    _require(1 <= n <= s.max_n, "sampling.n", f"must be between 1 and {s.max_n}, got {sp.n}")
    temperature = sp.temperature if sp.HasField("temperature") else g.default_temperature
    _require(
        math.isfinite(temperature) and temperature >= 0,
        "sampling.temperature",
        f"must be a finite number >= 0, got {temperature}",
    )
    top_p = sp.top_p if sp.HasField("top_p") else 1.0
    _require(
        math.isfinite(top_p) and 0 < top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {top_p}"
    )
    max_tokens = sp.max_tokens or g.default_max_tokens
    _require(
        1 <= max_tokens <= s.max_new_tokens,
        "sampling.max_tokens",
        f"must be between 1 and {s.max_new_tokens}, got {sp.max_tokens}",
    )
    _require(
        max_tokens <= g.max_model_len - MIN_PROMPT_TOKENS,
        "sampling.max_tokens",
        f"leaves no room for the prompt in the {g.max_model_len}-token window",
    )
    _require(
        len(sp.stop) <= MAX_STOP_STRINGS,
        "sampling.stop",
        f"at most {MAX_STOP_STRINGS} stop strings are allowed",
    )
    for i, stop in enumerate(sp.stop):
        _require(bool(stop), f"sampling.stop[{i}]", "must not be empty")
    return Sampling(
        n=n,
        temperature=float(temperature),
        top_p=float(top_p),
        max_tokens=max_tokens,
        seed=sp.seed if sp.HasField("seed") else None,
        stop=tuple(sp.stop),
    )


def parse_feedback(request: pb.FeedbackRequest) -> tuple[str, float]:
    _require(
        bool(SELECTION_ID.match(request.selection_id)),
        "selection_id",
        "must be the 32 hex characters returned by Rerank",
    )
    _require(math.isfinite(request.reward), "reward", f"must be finite, got {request.reward}")
    return request.selection_id, float(request.reward)
