"""Why LASeR trails the ensemble on LongBench here: LinUCB variants on the cached pools.

Reads the candidate pools a `laser-bench longbench` run left in its cache (no server, no
model: seconds) and replays the prequential `laser` method with one thing changed at a time:
alpha, one bandit per task instead of one shared, contexts left unnormalized, the reward
centred on the example's mean candidate score (takes out how hard the example is, which the
RM cannot change; it needs every candidate's gold score, so it is a diagnosis, not a method),
and the RM pool without one RM. Scores are qa_f1 x 100 averaged over tasks, mean and spread
over shuffles, next to random RM and the ensemble on the same pools.

  python -m laser_bench.longbench_ablate --data ../shared/data/longbench \
      --tasks qasper multifieldqa_en narrativeqa hotpotqa 2wikimqa musique --limit 8 --n 4
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laser_bench import longbench_eval as lbe
from laser_bench.longbench import _default_cache_dir, record_to_pool

from laser_serve.config import profile_reward_models
from laser_serve.selector import LinUCB

Variant = tuple[str, dict[str, Any]]


def load_cached_pools(
    cache_dir: Path, data_dir: Path, tasks: Sequence[str], limit: int | None, n: int
) -> tuple[dict[str, list[lbe.Pool]], list[str]]:
    """Pools for every example that has a cache entry with n candidates, and the RM names in
    the embedded server's order (the order arms are tried and ties broken, as in the bench)."""
    examples = lbe.load_examples(data_dir, tasks, limit)
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for path in cache_dir.glob("*/*/*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        key = record["key"]
        if key["n"] == n:
            records[(key["task"], key["example"])] = record
    found = {
        task: [(ex, records[(task, ex.key)]) for ex in exs if (task, ex.key) in records]
        for task, exs in examples.items()
    }
    found = {task: pairs for task, pairs in found.items() if pairs}
    if not found:
        raise SystemExit(f"no cached pools with n={n} under {cache_dir}; run laser-bench longbench")
    cached = set(next(iter(found.values()))[0][1]["key"]["reward_models"])
    rm_names = [r.name for r in profile_reward_models("smollm2-135m") if r.name in cached]
    rm_names += sorted(cached - set(rm_names))
    pools = {
        task: [record_to_pool(ex, rec, rm_names) for ex, rec in pairs]
        for task, pairs in found.items()
    }
    return pools, rm_names


def _task_average(pools: Sequence[lbe.Pool], scores: Sequence[float]) -> float:
    """Mean over tasks of each task's mean score, x 100 (the bench's `average`)."""
    by_task: dict[str, list[float]] = {}
    for pool, score in zip(pools, scores, strict=True):
        by_task.setdefault(pool.task, []).append(score)
    return 100 * statistics.fmean(statistics.fmean(v) for v in by_task.values())


def _laser_score(
    pools: dict[str, list[lbe.Pool]],
    gold: dict[str, list[list[float]]],
    rm_names: Sequence[str],
    seed: int,
    variant: dict[str, Any],
) -> float:
    """The prequential laser method's task average under one variant."""

    def factory(**kwargs: Any) -> LinUCB:
        return LinUCB(**{**kwargs, "normalize": variant["normalize"]})

    tasks = [[t] for t in pools] if variant["per_task"] else [list(pools)]
    chosen: list[lbe.Pool] = []
    scores: list[float] = []
    for group in tasks:
        group_pools = [p for t in group for p in pools[t]]
        group_gold = [qs for t in group for qs in gold[t]]
        rewards = (
            [[q - statistics.fmean(qs) for q in qs] for qs in group_gold]
            if variant["centred"]
            else group_gold
        )
        choices = lbe.evaluate_methods(
            group_pools, rm_names, ["laser"], seed=seed, alpha=variant["alpha"],
            qualities=rewards, linucb_factory=factory,
        )["laser"]  # fmt: skip
        chosen += group_pools
        scores += [qs[c.candidate] for qs, c in zip(group_gold, choices, strict=True)]
    return _task_average(chosen, scores)


def variants(rm_names: Sequence[str]) -> list[Variant]:
    base = {"alpha": 0.1, "per_task": False, "normalize": True, "centred": False}
    rows: list[Variant] = [("laser as benched (alpha 0.1, shared, unit contexts)", base)]
    rows += [(f"alpha {a}", base | {"alpha": a}) for a in (0.0, 0.01, 0.3, 1.0, 3.0)]
    rows += [
        ("one bandit per task", base | {"per_task": True}),
        ("contexts not normalized", base | {"normalize": False}),
        ("reward centred on the example's mean", base | {"centred": True}),
        ("centred reward, alpha 1.0", base | {"centred": True, "alpha": 1.0}),
    ]
    rows += [(f"pool without {rm}", base | {"drop": rm}) for rm in rm_names]
    return rows


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    pools, rm_names = load_cached_pools(
        args.cache_dir or _default_cache_dir(), args.data, args.tasks, args.limit, args.n
    )
    gold = {t: [p.qualities() for p in ps] for t, ps in pools.items()}  # scored once
    flat = [p for ps in pools.values() for p in ps]
    flat_gold = [qs for qss in gold.values() for qs in qss]
    seeds = range(args.seeds)
    results: dict[str, list[float]] = {"random RM": [], "ensemble": []}
    for seed in seeds:
        res = lbe.evaluate_methods(flat, rm_names, ["random", "ensemble"], seed=seed)
        for method, label in (("random", "random RM"), ("ensemble", "ensemble")):
            scores = [qs[c.candidate] for qs, c in zip(flat_gold, res[method], strict=True)]
            results[label].append(_task_average(flat, scores))
    for label, v in variants(rm_names):
        names = [r for r in rm_names if r != v.get("drop")]
        results[label] = [_laser_score(pools, gold, names, s, v) for s in seeds]
    return [(k, statistics.fmean(v), statistics.pstdev(v)) for k, v in results.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="LongBench JSONL folder")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--n", type=int, default=8, help="candidates per example of the cached run")
    p.add_argument("--seeds", type=int, default=10, help="shuffles of the example order")
    p.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args(argv)
    rows = run(args)
    print("| variant | qa_f1 avg | ± over seeds |\n|---|---:|---:|")
    for label, mean, spread in rows:
        print(f"| {label} | {mean:.2f} | {spread:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
