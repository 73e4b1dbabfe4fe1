"""Warm-start priors read from files: ``selector.warm_start`` (``laser-serve --warm-start``,
``laser-train --warm-start``).

Two kinds of file, told apart by what the path is:

- a laser-serve state dir: its journal's decisions that got a reward
  (:func:`laser_serve.server.journal.decision_log`), each an event (x, chosen arm, the
  normalized reward the logging selector learned from), learned through
  :func:`laser_serve.selector.warm_start`;
- best-of-n pool files (a ``.jsonl.gz`` of ``laser-bench gsm8k --ship`` and friends, or a
  folder of them): full information. Each row holds the context vector the pool's encoder
  made (header ``encoder``) and every RM's scores of every candidate, so R[i, k] is the task
  score of the candidate RM k would pick: the reward an application would send. Learned
  through :func:`laser_serve.selector.warm_start_table`. The contexts are used as recorded,
  so the pool must come from the context encoder the selector runs with (the dimension is
  checked, the encoder named in the error).

``rounds`` says how many rounds the whole prior counts as (None: each event counts once).
Data over other arms or another context dimension is refused with the difference named
(the selector's own checks). Reading pool files needs the ``laser_bench`` package, which the
laser-serve distribution installs.
"""

from __future__ import annotations

from pathlib import Path

from laser_serve.selector import Policy, warm_start, warm_start_table
from laser_serve.server import journal


def apply_prior(policy: Policy, path: str | Path, rounds: float | None = None) -> str:
    """Warm-start ``policy`` from ``path``; returns what was learned, for the log.
    ValueError (what is wrong with the file, or how it differs from the policy)."""
    path = Path(path)
    if path.is_dir() and journal.segments(path):
        dlog = journal.decision_log(path, policy.arms)
        n = warm_start(
            policy, dlog.contexts, dlog.chosen, dlog.rewards, rounds=rounds, arm_names=dlog.arms
        )
        return f"{n} logged decisions of the journal in {path}"
    pools = sorted(path.glob("*.jsonl.gz")) if path.is_dir() else [path]
    if not path.exists() or not pools or not all(p.name.endswith(".jsonl.gz") for p in pools):
        raise ValueError(
            f"{path} is neither a laser-serve state dir with a journal nor pool files "
            "(.jsonl.gz, or a folder of them)"
        )
    from laser_bench import replay

    try:
        header, X, R = replay.reward_table(pools)
    except replay.BenchError as exc:
        raise ValueError(str(exc)) from None
    names = [rm["name"] for rm in header["reward_models"]]
    if X.shape[1] != policy.dim:
        raise ValueError(
            f"the pools' contexts ({header.get('encoder')} encoder) have dimension "
            f"{X.shape[1]}, the selector's is {policy.dim}: build the pools with the "
            "context encoder the selector runs with"
        )
    n = warm_start_table(policy, X, R, rounds=rounds, arm_names=names)
    return f"{n} rewards (full information, {X.shape[0]} rows) of the pools in {path}"
