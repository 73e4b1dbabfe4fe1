"""The Generator protocol and prompt preparation shared by every backend.

Prompts become token ids here, once: the chat template is applied when the request carries
messages, and prompts longer than the model window are cut in the middle (the first and last
halves of the tokens are kept, the LongBench convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Prompt:
    """A prepared prompt: token ids for the policy model plus the text they decode to."""

    token_ids: list[int]
    text: str
    truncated: bool = False
    # The chat turns as the model sees them (cut when truncated); None for plain prompts.
    messages: list[dict[str, str]] | None = None


@dataclass
class Candidate:
    text: str
    token_count: int
    finish_reason: str  # "stop" | "length" | "provided"
    mean_logprob: float = float("nan")  # mean raw-model log-prob of the candidate's tokens
    extra: dict[str, Any] = field(default_factory=dict)


class Generator(Protocol):
    """Samples n candidates for a prepared prompt. One instance serves all requests."""

    name: str
    model: str
    max_model_len: int

    async def start(self) -> None: ...

    async def generate(
        self, prompt: Prompt, sampling: Sampling, request_id: str
    ) -> list[Candidate]:
        """Sample; cancelling the awaiting task aborts the work and frees its slot."""
        ...

    def healthy(self) -> bool:
        """False once the backend cannot serve any more (e.g. the vLLM engine died)."""
        ...

    async def close(self) -> None: ...


class PromptError(ValueError):
    """The prompt cannot be made to fit; `field` names the request field to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def truncate_middle(token_ids: list[int], max_tokens: int) -> list[int]:
    """Keep the first and last halves of `max_tokens` tokens (LongBench's rule)."""
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    if len(token_ids) <= max_tokens:
        return list(token_ids)
    half = max_tokens // 2
    return list(token_ids[:half]) + list(token_ids[len(token_ids) - (max_tokens - half) :])


# A request must leave the prompt at least this many tokens of the model window.
MIN_PROMPT_TOKENS = 16


class PromptBuilder:
    """Turns a plain prompt or chat messages into token ids that fit the model window."""

    def __init__(self, tokenizer: Any, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len

    def build(
        self, prompt: str | None, messages: list[dict[str, str]] | None, max_new_tokens: int
    ) -> Prompt:
        budget = self.max_model_len - max_new_tokens
        if budget < MIN_PROMPT_TOKENS:
            raise PromptError(
                "sampling.max_tokens",
                f"{max_new_tokens} leaves no room for the prompt in the "
                f"{self.max_model_len}-token window",
            )
        if messages:
            return self._build_chat(messages, budget)
        ids = self.tokenizer(prompt or "", add_special_tokens=False)["input_ids"]
        cut = truncate_middle(ids, budget)
        return Prompt(cut, self.tokenizer.decode(cut), truncated=len(cut) < len(ids))

    def _build_chat(self, messages: list[dict[str, str]], budget: int) -> Prompt:
        ids = self._template(messages)
        if len(ids) <= budget:
            return Prompt(ids, self.tokenizer.decode(ids), messages=messages)
        # Cut the longest turn in the middle by the excess, then re-apply the template.
        longest = max(range(len(messages)), key=lambda i: len(messages[i]["content"]))
        content_ids = self.tokenizer(messages[longest]["content"], add_special_tokens=False)[
            "input_ids"
        ]
        keep = len(content_ids) - (len(ids) - budget)
        while True:  # decode/encode round trips can drift by a token or two: cut until it fits
            if keep < 8:
                raise PromptError("messages", "do not fit the model window even when cut")
            cut = [dict(m) for m in messages]
            cut[longest]["content"] = self.tokenizer.decode(truncate_middle(content_ids, keep))
            ids = self._template(cut)
            if len(ids) <= budget:
                return Prompt(ids, self.tokenizer.decode(ids), truncated=True, messages=cut)
            keep -= len(ids) - budget

    def _template(self, messages: list[dict[str, str]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(out["input_ids"])
