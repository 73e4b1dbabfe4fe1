"""Save/load round trips, refusals with clear messages, corrupt files, older states."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from laser_serve.selector import LinUCB, SelectorStateError, make_policy
from laser_serve.selector import state as state_mod

ARMS = ["rm_a", "rm_b", "rm_c"]
SPECS = ["linucb", "random", "fixed:rm_b", "round-robin", "epsilon-greedy:0.3", "ensemble"]


def _train(policy, n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(policy.dim)
        arm = policy.choose(x)[0]
        policy.update(arm, x, float(x[arm % policy.dim] + 0.1 * rng.standard_normal()))
    return policy


def _assert_same_future(a, b, n: int = 100, seed: int = 9):
    """Identical choices (and learning) on the next ``n`` contexts."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(a.dim)
        ca, cb = a.choose(x), b.choose(x)
        assert ca == cb
        r = float(rng.standard_normal())
        assert a.update(ca[0], x, r) == b.update(cb[0], x, r)


@pytest.mark.parametrize("spec", SPECS)
def test_save_load_round_trip(tmp_path, spec):
    kw = {"normalize": True, "project_to": 4, "reward_norm": "quantile", "window": 50}
    a = _train(make_policy(spec, ARMS, 6, seed=3, **kw))
    path = tmp_path / "sel.npz"
    a.save(path)
    b = make_policy(spec, ARMS, 6, seed=3, **kw)
    b.load(path)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["config"] == sb["config"] and sa["extra"] == sb["extra"]
    for key, arr in sa["arrays"].items():
        np.testing.assert_array_equal(arr, sb["arrays"][key], err_msg=key)
    assert a.stats() == b.stats()
    _assert_same_future(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["sel.npz"]  # no temp file left


def test_round_trip_sym_kernel_and_state_dict(tmp_path):
    a = _train(LinUCB(ARMS, 5, kernel="sym"), n=300)
    a.save(tmp_path / "s.npz")
    b = LinUCB(ARMS, 5, kernel="sym")
    b.load(tmp_path / "s.npz")
    _assert_same_future(a, b)
    c = LinUCB(ARMS, 5)  # in-memory state dicts work the same way (and copy)
    sd = a.state_dict()
    c.load_state_dict(sd)
    sd["arrays"]["b"][:] = 1e9
    assert np.abs(c.theta - a.theta).max() < 1e-12


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"arms": ["rm_a", "rm_b", "rm_x"]}, "arm names differ"),
        ({"arms": ["rm_b", "rm_a", "rm_c"]}, "arm names differ"),
        ({"dim": 7}, "dimension differs"),
        ({"project_to": 3}, "projection differs"),
        ({"project_to": None}, "projection differs"),
        ({"seed": 1}, "projection differs"),
        ({"lam": 2.0}, "lam differs"),
        ({"reward_norm": "minmax"}, "reward normalization differs"),
    ],
)
def test_load_refuses_mismatched_configuration(tmp_path, other, message):
    config = {"arms": ARMS, "dim": 6, "project_to": 4, "seed": 0, "lam": 1.0}
    path = tmp_path / "state.npz"
    _train(LinUCB(**config)).save(path)
    target = LinUCB(**{**config, **other})
    before = target.state_dict()
    with pytest.raises(SelectorStateError, match=message) as info:
        target.load(path)
    assert str(path) in str(info.value)
    after = target.state_dict()  # a refused load changes nothing
    for key in before["arrays"]:
        np.testing.assert_array_equal(before["arrays"][key], after["arrays"][key])


def test_load_refuses_other_policy_kind(tmp_path):
    path = tmp_path / "state.npz"
    make_policy("random", ARMS, 4).save(path)
    with pytest.raises(SelectorStateError, match="state is for policy 'random'"):
        LinUCB(ARMS, 4).load(path)
    make_policy("fixed:rm_a", ARMS, 4).save(path)
    with pytest.raises(SelectorStateError, match="fixed:rm_a"):
        make_policy("fixed:rm_b", ARMS, 4).load(path)


def test_alpha_is_not_part_of_the_state_contract(tmp_path):
    path = tmp_path / "state.npz"
    _train(LinUCB(ARMS, 4, alpha=0.1)).save(path)
    p = LinUCB(ARMS, 4, alpha=0.7)
    p.load(path)  # alpha is a selection-time knob: the configured one is kept
    assert p.alpha == 0.7


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "state.npz"
    _train(LinUCB(ARMS, 8, project_to=4)).save(path)
    return path


def test_truncated_files_are_errors(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(SelectorStateError, match="corrupt or truncated|not a selector") as info:
            LinUCB(ARMS, 8, project_to=4).load(saved)
        assert str(saved) in str(info.value)


def test_corrupted_bytes_are_errors_never_a_silent_change(saved):
    original = LinUCB(ARMS, 8, project_to=4)
    original.load(saved)
    data = saved.read_bytes()
    arrays = original.state_dict()["arrays"]
    data_positions = []
    for key in ("a_inv", "theta", "projection", "pulls"):
        raw = arrays[key].tobytes()
        start = data.find(raw)
        assert start > 0, key
        data_positions.append(start + len(raw) // 2)
    rng = np.random.default_rng(0)
    positions = data_positions + rng.integers(0, len(data), size=40).tolist()
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        saved.write_bytes(bytes(bad))
        p = LinUCB(ARMS, 8, project_to=4)
        try:
            p.load(saved)
        except SelectorStateError as exc:
            assert str(saved) in str(exc)
            continue
        # Some zip metadata (timestamps, local-header copies) is unused: then the state
        # must load unchanged. Array bytes must never load.
        assert pos not in data_positions, f"flipped array byte {pos} loaded"
        sa, sb = original.state_dict(), p.state_dict()
        for key in sa["arrays"]:
            np.testing.assert_array_equal(sa["arrays"][key], sb["arrays"][key])


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file at all" * 100)
    with pytest.raises(SelectorStateError, match="junk.npz"):
        LinUCB(ARMS, 4).load(path)
    np.save(path.open("wb"), np.zeros(3))  # a bare .npy, not a state
    with pytest.raises(SelectorStateError, match="not a selector state"):
        LinUCB(ARMS, 4).load(path)
    with pytest.raises(FileNotFoundError):
        LinUCB(ARMS, 4).load(tmp_path / "missing.npz")


def test_unsupported_version_and_foreign_format(tmp_path, monkeypatch):
    path = tmp_path / "v2.npz"
    monkeypatch.setattr(state_mod, "VERSION", 2)
    LinUCB(ARMS, 4).save(path)
    monkeypatch.undo()
    with pytest.raises(SelectorStateError, match="unsupported state format version 2"):
        LinUCB(ARMS, 4).load(path)
    header = json.dumps({"format": "something-else"}).encode()
    with path.open("wb") as f:
        np.savez(f, header=np.frombuffer(header, dtype=np.uint8))
    with pytest.raises(SelectorStateError, match="not a selector state file"):
        LinUCB(ARMS, 4).load(path)


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    p = _train(LinUCB(ARMS, 4))
    p.save(path)
    os.chmod(path, 0o640)
    good = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(state_mod.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        p.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert [q.name for q in tmp_path.iterdir()] == ["state.npz"]
    p.save(path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)  # replacing keeps the mode


def test_state_saved_with_the_old_gram_matrix_still_loads(tmp_path):
    """Builds before merge was removed also saved Σxxᵀ ("gram"); such a state loads and the
    matrix is dropped."""
    a = _train(LinUCB(ARMS, 5))
    sd = a.state_dict()
    arrays = {**sd["arrays"], "gram": np.zeros((3, 5, 5))}
    header = {"policy": sd["policy"], "config": sd["config"], "extra": sd["extra"]}
    state_mod.write_state(tmp_path / "old.npz", header, arrays)
    b = LinUCB(ARMS, 5)
    b.load(tmp_path / "old.npz")
    assert "gram" not in b.state_dict()["arrays"]
    _assert_same_future(a, b)
