"""Reward models built on a causal LM: lm-judge (Yes/No logit gap) and lm-loglik.

Both score prefix + candidate rows whose prefix is shared by all candidates of a request,
so the prefix is computed once (`rewards.causal`); the judge's template puts everything
shared before the candidate for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from laser_serve.generation.base import truncate_middle
from laser_serve.models import causal_lm, parameter_bytes
from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.causal import (
    SLOT,
    Hidden,
    HiddenPath,
    Rows,
    TokenLogprobs,
    continuation_logprobs,
    decoder_of,
    shared_prefix_hidden,
    shared_prefix_hidden_many,
    split_at_slot,
)

JUDGE_TEMPLATE = (
    "Is the response below correct and helpful for the request? Answer Yes or No.\n\n"
    "Request:\n{prompt}\n\nResponse:\n{candidate}"
)


class _CausalLmRM:
    kind = ""

    def __init__(
        self,
        name: str,
        model: str,
        device: str,
        max_length: int,
        batch_size: int,
        dtype: str = "float32",
    ):
        self.name, self.model, self.device = name, model, device
        self.max_length, self.batch_size = max_length, batch_size
        self.lm, self.tokenizer = causal_lm(model, device, dtype)
        self.decoder = decoder_of(self.lm)
        self.head = self.lm.get_output_embeddings()

    def memory_bytes(self) -> int:
        return parameter_bytes(self.lm)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _fit_prompt(self, messages: list[dict[str, str]], reserve: int) -> list[dict[str, str]]:
        """Cut the longest turn in the middle so prompt + `reserve` tokens fit max_length."""
        longest = max(range(len(messages)), key=lambda i: len(messages[i]["content"]))
        ids = self._ids(messages[longest]["content"])
        others = sum(len(self._ids(m["content"])) for i, m in enumerate(messages) if i != longest)
        budget = max(self.max_length - reserve - others - 32 * len(messages), 16)
        if len(ids) <= budget:
            return messages
        cut = [dict(m) for m in messages]
        cut[longest]["content"] = self.tokenizer.decode(truncate_middle(ids, budget))
        return cut

    @property
    def max_tokens(self) -> int:
        """Tokens per forward: the memory of `batch_size` rows of `max_length`."""
        return self.batch_size * self.max_length

    def score(self, request: ScoreRequest) -> np.ndarray:
        return self.score_batch([request])[0]

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        """Several requests' scores from shared forwards (the scheduler's batches)."""
        rows = [self.rows(r) for r in requests]
        hidden = shared_prefix_hidden_many(self.decoder, rows, self.max_tokens)
        return self.head_scores(list(zip(rows, hidden, strict=True)))

    def score_rows(self, rows: Rows, hidden_path: HiddenPath = shared_prefix_hidden) -> np.ndarray:
        """One request's scores; `hidden_path` picks the shared or the plain (old) path."""
        return self.head_scores([(rows, hidden_path(self.decoder, rows, self.max_tokens))])[0]

    def rows(self, request: ScoreRequest) -> Rows:
        """The request as one shared prefix and a continuation per candidate."""
        raise NotImplementedError

    def head_scores(self, scored: Sequence[tuple[Rows, Hidden]]) -> list[np.ndarray]:
        """Each request's scores from the decoder's hidden states (prefix's last token,
        continuations), all requests through the head at once."""
        raise NotImplementedError


class LmLoglikRM(_CausalLmRM):
    """Mean token log-probability of the candidate given the prompt (how the paper's
    reference code scores with a policy-sized LM)."""

    kind = "lm-loglik"

    def rows(self, request: ScoreRequest) -> Rows:
        tok = self.tokenizer
        eos = [tok.eos_token_id]
        conts = [self._ids(c)[: self.max_length // 2] + eos for c in request.candidates]
        longest = max(len(c) for c in conts)
        prompt = tok.apply_chat_template(
            self._fit_prompt(request.messages, longest),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        return Rows(list(prompt)[-(self.max_length - longest) :], conts)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logprobs = TokenLogprobs(self.head)

    def memory_bytes(self) -> int:
        return super().memory_bytes() + self.logprobs.extra_bytes(self.head)

    def head_scores(self, scored: Sequence[tuple[Rows, Hidden]]) -> list[np.ndarray]:
        return [
            np.asarray([lp.mean().item() for lp in logprobs], dtype=np.float64)
            for logprobs in continuation_logprobs(self.logprobs, scored)
        ]


class LmJudgeRM(_CausalLmRM):
    """Ask the LM whether the response is correct and helpful; score = logit(Yes) - logit(No),
    computed in fp32 (in bf16 correct and wrong answers tie)."""

    kind = "lm-judge"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.yes = self._ids("Yes")[0]
        self.no = self._ids("No")[0]

    def rows(self, request: ScoreRequest) -> Rows:
        cands = [truncate_middle(self._ids(c), self.max_length // 4) for c in request.candidates]
        longest = max(len(c) for c in cands)
        user = self._fit_prompt([{"role": "user", "content": request.prompt}], longest + 64)
        text = JUDGE_TEMPLATE.format(prompt=user[0]["content"], candidate=SLOT)
        prefix, suffix = split_at_slot(
            self.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True
        )
        room = self.max_length - longest - len(suffix)
        return Rows(prefix[-room:], [c + suffix for c in cands])

    def head_scores(self, scored: Sequence[tuple[Rows, Hidden]]) -> list[np.ndarray]:
        import torch

        last = torch.stack([h[-1] for _, (_, hidden) in scored for h in hidden])
        weight = self.head.weight[[self.yes, self.no]].float()
        logits = last.float() @ weight.T  # the two logits that matter, in fp32
        if getattr(self.head, "bias", None) is not None:
            logits += self.head.bias[[self.yes, self.no]].float()
        gaps = (logits[:, 0] - logits[:, 1]).double().numpy(force=True)
        counts = [len(rows.continuations) for rows, _ in scored]
        return np.split(gaps, np.cumsum(counts)[:-1])
