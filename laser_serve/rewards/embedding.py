"""embedding: cosine similarity between the question and each candidate (sentence encoder)."""

from __future__ import annotations

import numpy as np

from laser_serve.context import embed_texts
from laser_serve.models import parameter_bytes, text_encoder
from laser_serve.rewards.base import ScoreRequest


class EmbeddingRM:
    kind = "embedding"

    def __init__(self, name: str, model: str, device: str, max_length: int, batch_size: int):
        self.name, self.model, self.device = name, model, device
        self.max_length, self.batch_size = max_length, batch_size
        self.encoder, self.tokenizer = text_encoder(model, device)

    def memory_bytes(self) -> int:
        return parameter_bytes(self.encoder)

    def score(self, request: ScoreRequest) -> np.ndarray:
        q = embed_texts(self.encoder, self.tokenizer, [request.question], self.max_length)[0]
        out = []
        for start in range(0, len(request.candidates), self.batch_size):
            chunk = request.candidates[start : start + self.batch_size]
            out.append(embed_texts(self.encoder, self.tokenizer, chunk, self.max_length) @ q)
        return np.concatenate(out).astype(np.float64)
