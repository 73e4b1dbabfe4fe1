"""`laser-train --warm-start`: a new run's selector starts with the prior's statistics (a
journal of logged decisions over the run's RMs), and a prior of another dimension is refused
with the difference named."""

import dataclasses

import numpy as np
import pytest
import torch
from transformers import AutoConfig

from laser_serve import config as config_module
from laser_serve.models import SMOLLM2, resolve
from laser_serve.server.learning import Learner
from laser_serve.server.metrics import Metrics
from laser_serve.training.cli import main
from laser_serve.training.loop import train
from laser_serve.training.pool import pool_configs

pytestmark = pytest.mark.timeout(1200)


def _journal(folder, arms: tuple[str, ...], dim: int, n: int) -> list[int]:
    """A state dir whose journal holds n rewarded decisions; returns each arm's count."""
    c = config_module.load(None, [f"server.state_dir={folder}", "selector.policy=random"])
    learner = Learner(c, arms, dim, Metrics())
    learner.open()
    rng = np.random.default_rng(0)
    for _ in range(n):
        x = rng.standard_normal(dim)
        decision = learner.policy.decide(x)
        sel = learner.record(learner.policy, decision, x, 2, 0, True, None)
        learner.feedback(sel, float(rng.random()))
    learner.close()
    return [s.pulls for s in learner.policy.stats()]


def test_a_warm_started_run_starts_with_the_prior(tiny_config, tmp_path, capsys):
    arms = tuple(rm.name for rm in pool_configs(tiny_config))
    dim = AutoConfig.from_pretrained(resolve(SMOLLM2)).hidden_size  # the policy LM's context
    prior = _journal(tmp_path / "prior", arms, dim, 30)
    threads = torch.get_num_threads()
    try:
        cfg = dataclasses.replace(
            tiny_config, out=str(tmp_path / "run"), max_steps=1, warm_start=str(tmp_path / "prior")
        )
        summary = train(cfg, lambda _: None)
        pulls = [summary["selections"][a]["pulls"] for a in arms]
        assert sum(pulls) == 30 + summary["updates"] and summary["updates"] == 1
        assert all(p >= q for p, q in zip(pulls, prior, strict=True))
        _journal(tmp_path / "small", arms, 4, 3)
        argv = ["--data", "jsonl", "--data-dir", tiny_config.data_dir, "--verifier"]
        argv += ["--out", str(tmp_path / "bad"), "--warm-start", str(tmp_path / "small")]
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--eval-size", "2", "--threads", "1", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert f"contexts have dimension 4, the policy's is {dim}" in err
