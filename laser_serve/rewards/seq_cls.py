"""seq-cls: any AutoModelForSequenceClassification reward model with one output."""

from __future__ import annotations

from typing import Any

import numpy as np

from laser_serve.generation.base import truncate_middle
from laser_serve.models import parameter_bytes, resolve
from laser_serve.rewards.base import ScoreRequest


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

    def score(self, request: ScoreRequest) -> np.ndarray:
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
