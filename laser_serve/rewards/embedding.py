"""embedding: cosine similarity between the question and each candidate (sentence encoder)."""

from __future__ import annotations

from collections.abc import Sequence

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
        return self.score_batch([request])[0]

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        """Every question and candidate of the batch through the encoder together."""
        texts = [t for r in requests for t in (r.question, *r.candidates)]
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            rows.append(embed_texts(self.encoder, self.tokenizer, chunk, self.max_length))
        emb, out, at = np.concatenate(rows), [], 0
        for r in requests:
            q, cands = emb[at], emb[at + 1 : at + 1 + len(r.candidates)]
            out.append((cands @ q).astype(np.float64))
            at += 1 + len(r.candidates)
        return out
