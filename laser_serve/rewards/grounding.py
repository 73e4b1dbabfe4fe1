"""grounding: how much of an answer the prompt's document supports (document QA).

A candidate's score is the mean of the share of its unigrams and the share of its bigrams
that occur in the prompt, after SQuAD normalization, ignoring the words of the question
itself (repeating the question is not evidence). An extractive answer scores 1, an
invented one near 0, an empty one 0. No model: the cost is milliseconds per request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.text import tokens


def _bigrams(words: list[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:], strict=False))


class GroundingRM:
    kind = "grounding"
    device = "cpu"

    def __init__(self, name: str, model: str = "", max_length: int = 0, **_: object) -> None:
        self.name, self.model, self.max_length = name, model or "prompt-overlap", max_length

    def memory_bytes(self) -> int:
        return 0

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        return [self.score(r) for r in requests]

    def score(self, request: ScoreRequest) -> np.ndarray:
        document = tokens(request.prompt)
        doc_words, doc_pairs = set(document), _bigrams(document)
        question = set(tokens(request.question))
        out = []
        for candidate in request.candidates:
            words = tokens(candidate)
            content = [w for w in words if w not in question]
            if not content:
                out.append(0.0)
                continue
            unigram = sum(w in doc_words for w in content) / len(content)
            pairs = [p for p in zip(words, words[1:], strict=False) if not set(p) <= question]
            bigram = sum(p in doc_pairs for p in pairs) / len(pairs) if pairs else unigram
            out.append((unigram + bigram) / 2)
        return np.asarray(out, dtype=np.float64)
