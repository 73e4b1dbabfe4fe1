"""The RewardModel protocol: score a batch of candidates for one prompt with one RM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class ScoreRequest:
    messages: list[dict[str, str]]  # the conversation; a plain prompt is one user turn
    candidates: list[str]
    question: str  # what the answer should address (context_text, or the prompt's tail)
    reference: str | None = None  # gold answer, only where one exists (training, verifier)

    @property
    def prompt(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages)


class RewardModel(Protocol):
    name: str
    kind: str
    model: str
    device: str
    max_length: int

    def score(self, request: ScoreRequest) -> np.ndarray:
        """One float per candidate, higher is better. Blocking: call on the torch thread."""
        ...

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        """`score` of several requests at once, in as few forwards as the RM can (the
        scheduler batches concurrent requests); equal to calling `score` on each."""
        ...

    def memory_bytes(self) -> int: ...
