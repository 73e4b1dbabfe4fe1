"""Reward models: one module per kind, all behind the RewardModel protocol."""

from __future__ import annotations

from laser_serve.config import RewardModelConfig
from laser_serve.devices import pick
from laser_serve.rewards.base import RewardModel, ScoreRequest

__all__ = ["SCORING_VERSION", "RewardModel", "ScoreRequest", "make_reward_model"]

# Bumped when a kind's scores change for the same inputs, so cached scores are recomputed.
SCORING_VERSION = {"lm-judge": 2, "lm-loglik": 2, "seq-cls": 2, "consensus": 1, "grounding": 1}


def make_reward_model(config: RewardModelConfig) -> RewardModel:
    """Load one RM; blocking (call on the torch thread at start-up)."""
    from laser_serve.rewards.consensus import ConsensusRM
    from laser_serve.rewards.embedding import EmbeddingRM
    from laser_serve.rewards.grounding import GroundingRM
    from laser_serve.rewards.lm import LmJudgeRM, LmLoglikRM
    from laser_serve.rewards.seq_cls import SeqClsRM
    from laser_serve.rewards.verifier import VerifierRM

    kinds = {
        "seq-cls": SeqClsRM,
        "lm-judge": LmJudgeRM,
        "lm-loglik": LmLoglikRM,
        "embedding": EmbeddingRM,
        "verifier": VerifierRM,
        "consensus": ConsensusRM,
        "grounding": GroundingRM,
    }
    extra = {"dtype": config.dtype} if config.kind in ("lm-judge", "lm-loglik") else {}
    return kinds[config.kind](
        config.name,
        config.model,
        device=pick(config.device),
        max_length=config.max_length,
        batch_size=config.batch_size,
        **extra,
    )
