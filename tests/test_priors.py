"""Warm-start priors from files (laser_serve.priors): best-of-n pools give every arm's reward
(full information), a journal gives the logged decisions, and a file that does not match the
selector is refused with the difference named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from laser_bench import replay

from laser_serve import config as config_module
from laser_serve.errors import ConfigError
from laser_serve.priors import apply_prior
from laser_serve.selector import make_policy
from laser_serve.server.learning import Learner
from laser_serve.server.metrics import Metrics

ARMS = ["judge", "loglik"]


def _pools(path: Path, dim: int = 3) -> Path:
    """Two GSM8K rows with answer 4: judge picks the right candidate in row 0, loglik in 1."""
    records = []
    for i in range(2):
        row = replay.Row("gsm8k", f"{i:032x}", "", f"q{i}", ("#### 4",), 16)
        good = [0.0, 1.0] if i == 0 else [1.0, 0.0]
        records.append(
            (
                row,
                {
                    "generate": {
                        "key": {},
                        "value": {
                            "candidates": [
                                {"text": "#### 3", "logprob": -1.0},
                                {"text": "#### 4", "logprob": -1.0},
                            ],
                            "greedy": {"text": "#### 4"},
                            "generate_seconds": 0.0,
                        },
                    },
                    "context": {"key": {}, "value": {"context": replay.pack(np.eye(dim)[i])}},
                    "scores": {
                        "judge": {"key": {}, "value": {"scores": good, "seconds": 0.0}},
                        "loglik": {"key": {}, "value": {"scores": good[::-1], "seconds": 0.0}},
                    },
                },
            )
        )
    header = {
        "format": replay.POOL_FORMAT,
        "version": replay.POOL_VERSION,
        "encoder": "sentence",
        "reward_models": [{"name": n} for n in ARMS],
    }
    replay.write_pools(path, header, records)
    return path


def test_pools_warm_every_arm_with_the_reward_of_its_pick(tmp_path: Path) -> None:
    path = _pools(tmp_path / "p.jsonl.gz")
    p = make_policy("linucb", ARMS, 3, alpha=0.0)
    assert "4 rewards (full information, 2 rows)" in apply_prior(p, path, rounds=10)
    assert [s.pulls for s in p.stats()] == [2, 2]
    assert p.choose([1.0, 0.0, 0.0]) == (0,) and p.choose([0.0, 1.0, 0.0]) == (1,)
    assert "full information" in apply_prior(make_policy("linucb", ARMS, 3), tmp_path)


def test_mismatched_priors_are_refused_with_the_difference_named(tmp_path: Path) -> None:
    path = _pools(tmp_path / "p.jsonl.gz")
    with pytest.raises(
        ValueError, match="sentence encoder\\) have dimension 3, the selector's is 5"
    ):
        apply_prior(make_policy("linucb", ARMS, 5), path)
    with pytest.raises(ValueError, match="missing from the data: \\['sim'\\]"):
        apply_prior(make_policy("linucb", ["judge", "sim"], 3), path)
    with pytest.raises(ValueError, match="neither a laser-serve state dir"):
        apply_prior(make_policy("linucb", ARMS, 3), tmp_path / "nope")
    # a journal prior through the server's configuration: ConfigError names the key
    c = config_module.load(None, [f"server.state_dir={tmp_path / 'log'}"])
    logger = Learner(c, tuple(ARMS), 3, Metrics())
    logger.open()
    sel = logger.record(
        logger.policy, logger.policy.decide(np.ones(3)), np.ones(3), 2, 0, True, None
    )
    logger.feedback(sel, 1.0)
    logger.close()
    warm = config_module.load(
        None, [f"server.state_dir={tmp_path / 'new'}", f"selector.warm_start={tmp_path / 'log'}"]
    )
    with pytest.raises(ConfigError, match="selector.warm_start .*dimension 3, the policy's is 4"):
        Learner(warm, tuple(ARMS), 4, Metrics()).open()
