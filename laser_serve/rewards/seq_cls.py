"""seq-cls: any AutoModelForSequenceClassification reward model with one output.

Decoder RMs (a `score` head on a causal LM, as Skywork-Reward and most open RMs) read the
conversation left to right, so the prompt is computed once for all candidates
(`rewards.causal`); encoder cross-encoders see each (prompt, candidate) pair in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from laser_serve.generation.base import truncate_middle
from laser_serve.models import parameter_bytes, resolve
from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.causal import (
    SLOT,
    HiddenPath,
    Rows,
    decoder_of,
    shared_prefix_hidden,
    shared_prefix_hidden_many,
    split_at_slot,
)


class SeqClsRM:
    kind = "seq-cls"

    def __init__(self, name: str, model: str, device: str, max_length: int, batch_size: int):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name, self.model, self.device = name, model, device
        self.max_length, self.batch_size = max_length, batch_size
        path = resolve(model)
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        self.rm = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
        self.rm = self.rm.to(device).eval()
        if self.rm.config.num_labels != 1:
            raise ValueError(
                f"reward model {name}: {model} has {self.rm.config.num_labels} outputs; "
                "a seq-cls RM needs exactly one"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.rm.config.pad_token_id = self.tokenizer.pad_token_id
        head = getattr(self.rm, "score", None)
        self.causal = isinstance(head, torch.nn.Linear) and bool(self.tokenizer.chat_template)

    def memory_bytes(self) -> int:
        return parameter_bytes(self.rm)

    def _encode(self, messages: list[dict[str, str]], candidate: str) -> list[int]:
        tok = self.tokenizer
        if tok.chat_template:
            conv = messages + [{"role": "assistant", "content": candidate}]
            out: Any = tok.apply_chat_template(conv, tokenize=True, return_dict=True)
            ids = list(out["input_ids"])
        else:
            ids = tok("\n\n".join(m["content"] for m in messages), candidate)["input_ids"]
        return truncate_middle(ids, self.max_length)  # keeps the answer at the end

    def rows(self, request: ScoreRequest) -> Rows:
        """The conversation up to the answer (shared) and each answer with the template's
        closing tokens."""
        conv = request.messages + [{"role": "assistant", "content": SLOT}]
        prefix, suffix = split_at_slot(self.tokenizer, conv)
        cands = [
            truncate_middle(
                self.tokenizer(c, add_special_tokens=False)["input_ids"], self.max_length // 2
            )
            + suffix
            for c in request.candidates
        ]
        return Rows(truncate_middle(prefix, self.max_length - max(len(c) for c in cands)), cands)

    def score_rows(self, rows: Rows, hidden_path: HiddenPath = shared_prefix_hidden) -> np.ndarray:
        return self._head(hidden_path(decoder_of(self.rm), rows, self.max_tokens)[1])

    def _head(self, hidden: list[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            last = torch.stack([h[-1] for h in hidden])
            return self.rm.score(last)[:, 0].double().numpy(force=True)

    @property
    def max_tokens(self) -> int:
        return self.batch_size * self.max_length

    def score(self, request: ScoreRequest) -> np.ndarray:
        return self.score_batch([request])[0]

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        if self.causal:
            rows = [self.rows(r) for r in requests]
            hidden = shared_prefix_hidden_many(decoder_of(self.rm), rows, self.max_tokens)
            return [self._head(h) for _, h in hidden]
        return [self._pairs(r) for r in requests]

    def _pairs(self, request: ScoreRequest) -> np.ndarray:
        import torch

        rows = [self._encode(request.messages, c) for c in request.candidates]
        scores: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            batch = self.tokenizer.pad(
                {"input_ids": rows[start : start + self.batch_size]}, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                scores += self.rm(**batch).logits[:, 0].float().tolist()
        return np.asarray(scores, dtype=np.float64)
