"""Concurrent select/update from threads leaves the state that sequential updates give."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from laser_serve.selector import LinUCB, make_policy

THREADS, STEPS = 8, 400


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    # Switch threads every microsecond so that unlocked read-modify-writes would interleave
    # (with the default 5 ms interval the GIL hides most races at these sizes).
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("kernel", ["full", "sym"])
def test_threads_equal_sequential_updates(kernel, tmp_path):
    arms, d = ["a", "b", "c", "d"], 12
    shared = LinUCB(arms, d, kernel=kernel)
    logs: list[list[tuple[int, np.ndarray, float]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            rng = np.random.default_rng(100 + t)
            barrier.wait()
            for i in range(STEPS):
                x = rng.standard_normal(d)
                if i % 3 == 0:
                    arm = int(shared.select_batch(np.stack([x, -x]))[0])
                else:
                    arm = shared.select(x)
                r = float(x[arm] + 0.1 * rng.standard_normal())
                shared.update(arm, x, r)
                logs[t].append((arm, x, r))
                if i % 100 == 0:  # readers interleave with writers
                    shared.stats()
                    shared.save(tmp_path / f"t{t}.npz")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors

    sequential = LinUCB(arms, d, kernel=kernel)
    for log in logs:
        for arm, x, r in log:
            sequential.update(arm, x, r)
    got, want = shared.state_dict()["arrays"], sequential.state_dict()["arrays"]
    np.testing.assert_array_equal(got["pulls"], want["pulls"])
    assert got["pulls"].sum() == THREADS * STEPS
    np.testing.assert_allclose(got["b"], want["b"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got["reward_mean"], want["reward_mean"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(shared.a_inv, sequential.a_inv, atol=1e-8)
    np.testing.assert_allclose(shared.theta, sequential.theta, atol=1e-8)
    # the incremental inverse is still the inverse of what was accumulated
    gram = np.zeros((len(arms), d, d))
    for log in logs:
        for arm, x, _ in log:
            gram[arm] += np.outer(x, x)
    exact = np.linalg.inv(gram + np.eye(d))
    np.testing.assert_allclose(shared.a_inv, exact, atol=1e-8)
    selections = sum(s.selections for s in shared.stats())
    assert selections == THREADS * STEPS + THREADS * ((STEPS + 2) // 3)


@pytest.mark.parametrize("spec", ["round-robin", "random", "epsilon-greedy", "ensemble"])
def test_baselines_count_consistently_under_threads(spec):
    p = make_policy(spec, ["a", "b", "c"], 4)

    def worker() -> None:
        x = np.ones(4)
        for _ in range(300):
            arms = p.choose(x)
            p.update(arms[0], x, 1.0)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = p.stats()
    assert sum(s.pulls for s in stats) == THREADS * 300
    per_choice = 3 if spec == "ensemble" else 1
    assert sum(s.selections for s in stats) == THREADS * 300 * per_choice
    if spec == "round-robin":
        assert [s.selections for s in stats] == [800, 800, 800]
