"""LinUCB learns the clustered environment: per instance, per batch, with a noise arm."""

from __future__ import annotations

import numpy as np
import pytest

from laser_serve.selector import LinUCB, RandomPolicy, batch_context

ROUNDS, TAIL = 2000, 500


@pytest.mark.parametrize("reward_norm", ["none", "quantile"])
def test_linucb_learns_best_arm_per_cluster(cluster_env, play, reward_norm):
    env = cluster_env(k=4, d=16, seed=0)
    linucb = LinUCB(env.arms, env.d, reward_norm=reward_norm)
    chosen, best, regret = play(linucb, env, ROUNDS, seed=1)
    accuracy = np.mean(chosen[-TAIL:] == best[-TAIL:])
    assert accuracy >= 0.9, accuracy
    if reward_norm != "none":
        return  # quantile rewards are on another scale; regret is compared for raw rewards
    _, _, random_regret = play(RandomPolicy(env.arms, env.d, seed=0), env, ROUNDS, seed=1)
    assert regret.sum() <= random_regret.sum() / 5, (regret.sum(), random_regret.sum())


@pytest.mark.parametrize("seed", [2, 3])
def test_noise_arm_is_dropped(cluster_env, play, seed):
    # The noise arm pays 0.3 + N(0, 1) whatever the context: ten times the real arms' noise.
    env = cluster_env(k=4, d=16, seed=seed, noise_arm=True, noise_arm_mean=0.3)
    linucb = LinUCB(env.arms, env.d)
    chosen, best, _ = play(linucb, env, ROUNDS, seed=seed + 1)
    assert np.mean(chosen[-TAIL:] == env.k) < 0.1
    assert np.mean(chosen[-TAIL:] == best[-TAIL:]) >= 0.85


def test_per_batch_contexts_learn(cluster_env):
    env = cluster_env(k=4, d=16, seed=4)
    linucb = LinUCB(env.arms, env.d)
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(ROUNDS):
        X, cluster = env.batch(rng, size=8)  # a batch from one cluster at a time
        x = batch_context(X)
        arm = linucb.select(x)
        # the batch's reward: the mean of the chosen RM's rewards over the batch
        reward = float(np.mean([env.reward(arm, row, rng) for row in X]))
        linucb.update(arm, x, reward)
        hits.append(arm == cluster)
    assert np.mean(hits[-TAIL:]) >= 0.9


def test_projection_still_learns(cluster_env, play):
    env = cluster_env(k=4, d=16, seed=6)
    # project 16 → 12 dims; the cluster structure survives a random projection
    linucb = LinUCB(env.arms, env.d, project_to=12, normalize=True, seed=1)
    chosen, best, _ = play(linucb, env, ROUNDS, seed=7)
    assert np.mean(chosen[-TAIL:] == best[-TAIL:]) >= 0.9
