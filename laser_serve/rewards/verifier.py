"""verifier: exact match of the extracted final answer against the gold answer.

Only usable where gold answers exist (offline training); the server refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from laser_serve.rewards.base import ScoreRequest

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The final numeric answer, the standard GSM8K way: after '####' if present, else the
    last number in the text; commas and a trailing '.0' dropped."""
    tail = text.split("####")[-1] if "####" in text else text
    numbers = _NUMBER.findall(tail)
    if not numbers:
        return None
    value = numbers[0] if "####" in text else numbers[-1]
    value = value.replace(",", "").rstrip(".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


class VerifierRM:
    kind = "verifier"
    device = "cpu"

    def __init__(self, name: str, model: str = "", max_length: int = 0, **_: object) -> None:
        self.name, self.model, self.max_length = name, model or "exact-match", max_length

    def memory_bytes(self) -> int:
        return 0

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        return [self.score(r) for r in requests]

    def score(self, request: ScoreRequest) -> np.ndarray:
        if request.reference is None:
            raise ValueError(f"reward model {self.name} (verifier) needs a gold answer")
        gold = extract_answer(request.reference)
        return np.asarray(
            [float(gold is not None and extract_answer(c) == gold) for c in request.candidates]
        )
