"""`laser-serve --inspect` and `--rebuild`: what a state dir holds, and the way back from bad
feedback (a rebuild without it equals a run that never received it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from laser_serve import config as config_module
from laser_serve.server.learning import Learner
from laser_serve.server.main import main
from laser_serve.server.metrics import Metrics

ARMS = ("a", "b", "c")
DIM = 4
CONFIG = "".join(
    f'[[reward_models]]\nname = "{a}"\nkind = "embedding"\nmodel = "builtin:all-minilm-l6-v2"\n'
    for a in ARMS
)


def _learner(config_path: Path, state: Path) -> Learner:
    c = config_module.load(config_path, [f"server.state_dir={state}"])
    learner = Learner(c, ARMS, DIM, Metrics())
    learner.open()
    return learner


def _traffic(n: int = 60) -> list[tuple[np.ndarray, str, float]]:
    """(context, token, reward) per request: alice rewards arm a on positive first features,
    mallory sends 1.0 for whatever is chosen and arrives in a burst at the end."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.standard_normal(DIM)
        token = "mallory" if i >= n - 15 else "alice"
        out.append((x, token, float(rng.random())))
    return out


def _serve(learner: Learner, traffic) -> list:
    """Serve the traffic as the server does (decide, record, feedback); returns the log of
    (context, decision, token, reward)."""
    log = []
    for x, token, noise in traffic:
        decision = learner.policy.decide(x)
        sel = learner.record(learner.policy, decision, x, 2, 0, True, None)
        arm = ARMS[decision.arms[0]]
        reward = 1.0 if token == "mallory" else float(arm == "a" and x[0] > 0) * 0.5 + noise / 2
        learner.feedback(sel, reward, token=token)
        log.append((x, decision, token, reward))
    return log


def _replay(learner: Learner, log, accept) -> None:
    """The same decisions, without the feedback that ``accept`` refuses: the run that never
    received it (a rebuild replays decisions as they were made; it cannot make new ones)."""
    for x, decision, token, reward in log:
        sel = learner.record(learner.policy, decision, x, 2, 0, True, None)
        if accept(token, reward):
            learner.feedback(sel, reward, token=token)


def _arrays(learner: Learner) -> dict[str, np.ndarray]:
    arrays = learner.policy.state_dict()["arrays"]
    arrays.pop("last_update")  # wall-clock times
    arrays.pop("selections")  # counted by choose() live, from the decisions in a rebuild
    return arrays


def _selections(learner: Learner) -> list[int]:
    return [s.selections for s in learner.policy.stats()]


@pytest.fixture
def setup(tmp_path: Path):
    config_path = tmp_path / "laser.toml"
    config_path.write_text(CONFIG)
    return config_path, tmp_path


@pytest.mark.parametrize(
    ("flags", "accept"),
    [
        (["--drop-token", "mallory"], lambda token, reward: token != "mallory"),
        (["--keep-rewards", "0,0.6"], lambda token, reward: reward <= 0.6),
    ],
)
def test_rebuild_equals_a_run_that_never_received_the_dropped_feedback(setup, flags, accept):
    config_path, tmp = setup
    full = _learner(config_path, tmp / "full")
    log = _serve(full, _traffic())
    full.close()
    clean = _learner(config_path, tmp / "clean")
    _replay(clean, log, accept)
    clean.close()
    assert not np.array_equal(_arrays(full)["theta"], _arrays(clean)["theta"])

    args = ["--config", str(config_path), "--state-dir", str(tmp / "full")]
    assert main([*args, "--rebuild", str(tmp / "rebuilt"), *flags]) == 0
    rebuilt = _learner(config_path, tmp / "rebuilt")
    for key, a in _arrays(clean).items():
        np.testing.assert_array_equal(_arrays(rebuilt)[key], a, err_msg=key)
    assert _selections(rebuilt) == _selections(full)
    # the rebuilt dir is a state dir of its own: it can be rebuilt again, with the same result
    assert (
        main(
            [
                "--config",
                str(config_path),
                "--state-dir",
                str(tmp / "rebuilt"),
                "--rebuild",
                str(tmp / "again"),
            ]
        )
        == 0
    )
    again = _learner(config_path, tmp / "again")
    for key, a in _arrays(clean).items():
        np.testing.assert_array_equal(_arrays(again)[key], a, err_msg=key)


def test_rebuild_drops_a_time_window(setup, capsys):
    config_path, tmp = setup
    traffic = _traffic(30)
    full = _learner(config_path, tmp / "full")
    log = _serve(full, traffic[:20])
    cut = time.time()
    time.sleep(0.01)
    log += _serve(full, traffic[20:])
    full.close()
    clean = _learner(config_path, tmp / "clean")
    _replay(clean, log[:20], lambda token, reward: True)
    _replay(clean, log[20:], lambda token, reward: False)
    clean.close()
    args = ["--config", str(config_path), "--state-dir", str(tmp / "full")]
    window = f"{cut},{time.time() + 1}"
    assert main([*args, "--rebuild", str(tmp / "rebuilt"), "--drop-window", window]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["decision"], counts["applied"], counts["dropped"]) == (30, 20, 10)
    rebuilt = _learner(config_path, tmp / "rebuilt")
    for key, a in _arrays(clean).items():
        np.testing.assert_array_equal(_arrays(rebuilt)[key], a, err_msg=key)


def test_rebuild_refuses_a_target_that_is_not_empty(setup, capsys):
    config_path, tmp = setup
    _learner(config_path, tmp / "full").close()
    (tmp / "busy").mkdir()
    (tmp / "busy" / "x").write_text("")
    args = ["--config", str(config_path), "--state-dir", str(tmp / "full")]
    assert main([*args, "--rebuild", str(tmp / "busy")]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_inspect_shows_arms_and_rewards_by_token(setup, capsys):
    config_path, tmp = setup
    learner = _learner(config_path, tmp / "state")
    _serve(learner, _traffic())
    learner.snapshot()
    _serve(learner, _traffic(6))  # all mallory; after the snapshot: inspect replays it
    expected = {s.name: s.pulls for s in learner.policy.stats()}
    before = sorted((p.name, p.stat().st_size) for p in (tmp / "state").iterdir())
    args = ["--config", str(config_path), "--state-dir", str(tmp / "state")]
    assert main([*args, "--inspect"]) == 0
    out = capsys.readouterr().out
    for name, pulls in expected.items():
        assert f"| {name} | {pulls} |" in out
    assert "| mallory | 21 | 1 | 1 |" in out
    assert "| alice | 45 |" in out
    assert "66 decisions; feedback: application 66" in out
    assert "outside selector.reward_range [0, 1]: 0" in out
    assert sorted((p.name, p.stat().st_size) for p in (tmp / "state").iterdir()) == before
