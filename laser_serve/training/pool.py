"""The reward-model pool of a training run and scoring with the arms a policy chose."""

from __future__ import annotations

import dataclasses

import numpy as np

from laser_serve.config import RewardModelConfig, profile_reward_models
from laser_serve.config import load as load_config
from laser_serve.errors import ConfigError
from laser_serve.pipeline import choose_candidate, score_candidates
from laser_serve.rewards import RewardModel, ScoreRequest, make_reward_model
from laser_serve.training.config import TrainConfig

VERIFIER = RewardModelConfig("verifier", "verifier", "exact-match")


def pool_configs(config: TrainConfig) -> list[RewardModelConfig]:
    """The embedded pool (or an --rm-config file's), plus the verifier, minus unselected."""
    pool = (
        load_config(config.rm_config).reward_models
        if config.rm_config
        else profile_reward_models("smollm2-135m")  # laser-train's embedded policy
    )
    if config.verifier and all(rm.kind != "verifier" for rm in pool):
        pool.append(VERIFIER)
    if config.reward_models:
        names = [rm.name for rm in pool]
        unknown = [n for n in config.reward_models if n not in names]
        if unknown:
            raise ConfigError(
                f"unknown reward model(s) {', '.join(unknown)} in --reward-models; the pool is "
                f"{', '.join(names)} (add 'verifier' with --verifier)"
            )
        pool = [rm for rm in pool if rm.name in config.reward_models]
    if config.device != "auto":
        pool = [
            rm if rm.device != "auto" else dataclasses.replace(rm, device=config.device)
            for rm in pool
        ]
    return pool


def load_pool(configs: list[RewardModelConfig]) -> list[RewardModel]:
    return [make_reward_model(rm) for rm in configs]


def score(
    rms: list[RewardModel], arms: tuple[int, ...], request: ScoreRequest
) -> tuple[np.ndarray, dict[str, float]]:
    """The choosing scores of one prompt's candidates (one RM's, or the ensemble's combined
    z-scores) and the seconds each RM took: the pipeline's own scoring path."""
    names = [rms[a].name for a in arms]
    scores, seconds = score_candidates([rms[a] for a in arms], request)
    return choose_candidate(scores, names)[1], seconds
