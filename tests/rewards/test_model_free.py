"""consensus and grounding: model-free RMs."""

from __future__ import annotations

import numpy as np

from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.consensus import ConsensusRM, final_answer
from laser_serve.rewards.grounding import GroundingRM


def _req(candidates: list[str], prompt: str = "q", question: str = "q") -> ScoreRequest:
    return ScoreRequest([{"role": "user", "content": prompt}], candidates, question)


def test_final_answer_markers() -> None:
    assert final_answer("3 + 4 = 7\n#### 7") == "7"
    assert final_answer("so the total is \\boxed{1,200}.") == "1200"
    assert final_answer("The answer is: Paris.") == "paris"
    assert final_answer("I think it is about seven") is None


def test_consensus_votes_on_final_answers() -> None:
    rm = ConsensusRM("consensus")
    scores = rm.score(_req(["x #### 12", "y #### 12", "z #### 13", "#### 12.0", "no idea"]))
    assert scores.shape == (5,)
    assert scores[0] > scores[2] and scores[3] > scores[2]  # 3 of 5 say 12 (12.0 == 12)
    assert scores[2] > scores[4]  # a stated minority answer beats no answer
    np.testing.assert_allclose(scores[[0, 1, 3]], 0.6, atol=0.1)  # vote share plus tie-break
    assert abs(scores[0] - scores[1]) < 0.1  # ties are broken only below 1/n


def test_consensus_without_answers_is_mbr() -> None:
    rm = ConsensusRM("consensus")
    cands = ["the cat sat on the mat", "a cat sat on a mat", "dogs bark loudly at night"]
    scores = rm.score(_req(cands))
    assert scores[2] < min(scores[0], scores[1])  # the outlier agrees with nobody
    assert rm.score(_req(["only one"])).tolist() == [0.0]


def test_grounding_prefers_supported_answers() -> None:
    doc = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    rm = GroundingRM("grounding")
    q = "When was the Eiffel Tower completed?"
    scores = rm.score(
        _req(["completed in 1889", "It was built in 1925 by aliens", "", q], doc + "\n" + q, q)
    )
    assert scores[0] == 1.0
    assert scores[1] < 0.5
    assert scores[2] == 0.0 and scores[3] == 0.0  # empty, and repeating the question
