"""consensus: self-consistency / minimum Bayes risk over the request's own candidates.

Where the candidates state a final answer (math: '#### 42', '\\boxed{42}', 'the answer is
42'), a candidate's score is the share of candidates that reach the same answer (majority
vote, Wang et al. 2023), with the candidate's mean agreement with the others as a tie-break
below 1/n. Otherwise it is that mean agreement: token F1 against every other candidate
(MBR decoding with F1 as the utility). No model: the cost is microseconds per request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.text import normalize_answer, token_f1, tokens
from laser_serve.rewards.verifier import extract_answer

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer is[:\s]*([^\n]+)", re.IGNORECASE)


def final_answer(text: str) -> str | None:
    """The answer a candidate commits to, normalized; None when it states none."""
    if "####" in text:
        return extract_answer(text)
    for pattern in (_BOXED, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            stated = found[-1]
            return extract_answer(stated) or normalize_answer(stated) or None
    return None


class ConsensusRM:
    kind = "consensus"
    device = "cpu"

    def __init__(self, name: str, model: str = "", max_length: int = 0, **_: object) -> None:
        self.name, self.model, self.max_length = name, model or "vote+mbr-f1", max_length

    def memory_bytes(self) -> int:
        return 0

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        return [self.score(r) for r in requests]

    def score(self, request: ScoreRequest) -> np.ndarray:
        cands = request.candidates
        n = len(cands)
        if n < 2:
            return np.zeros(n)
        toks = [tokens(c) for c in cands]
        agreement = np.array(
            [np.mean([token_f1(toks[i], toks[j]) for j in range(n) if j != i]) for i in range(n)]
        )
        answers = [final_answer(c) for c in cands]
        if sum(a is not None for a in answers) * 2 < n:
            return agreement
        votes = np.array([0.0 if a is None else sum(b == a for b in answers) / n for a in answers])
        return votes + agreement / (2 * n)  # agreement < 1, so it only breaks vote ties
