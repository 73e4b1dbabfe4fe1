"""What the best-of-n tables report, from replays over several seeds.

- the score per method (100 × mean task score), overall and per task, with a 95% bootstrap
  CI over rows (each row's score averaged over the seeds' streams);
- paired bootstrap CIs of LASeR − ensemble, LASeR − best single RM and LASeR − greedy
  (same rows), and every reranking method − greedy (does best-of-n pay at all?);
- the selection headroom: the best single RM, the best RM per task and the best RM per row,
  all in hindsight (what choosing one RM per prompt could reach at most);
- RM seconds per request, absolute and relative to the ensemble's;
- a learning curve (cumulative mean reward against rounds) with the per-task best-RM line;
- the share of each RM LASeR chose, per task.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from laser_bench.methods import ENSEMBLE, GREEDY, LASER, LEARNERS, ORACLE, RM_PREFIX, Replay
from laser_bench.replay import Pool

CURVE_POINTS = 100


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int = 0) -> list[float]:
    """95% percentile bootstrap CI of the mean (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.size < 2 or np.all(values == values[0]):
        v = float(values.mean()) if values.size else math.nan
        return [v, v]
    res = bootstrap(
        (values,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=0.95,
        method="percentile",
        random_state=seed,
        vectorized=True,
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def per_row(runs: Sequence[Mapping[str, Replay]], method: str, n_rows: int) -> np.ndarray:
    """Each row's reward under `method`, averaged over the seeds' streams."""
    total = np.zeros(n_rows)
    for run in runs:
        r = run[method]
        total[r.rows] += r.reward
    return total / len(runs)


def summarize(
    pools: Sequence[Pool],
    runs: Sequence[Mapping[str, Replay]],
    rm_names: Sequence[str],
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The results object (`--json`): rounds, methods, paired, tasks, curve, selection."""
    methods = list(runs[0])
    n = len(pools)
    tasks = sorted({p.task for p in pools})
    by_task = {t: np.array([i for i, p in enumerate(pools) if p.task == t]) for t in tasks}
    rows = {m: per_row(runs, m, n) for m in methods}
    seconds = {m: float(np.mean([run[m].rm_seconds.mean() for run in runs])) for m in methods}
    ens_seconds = seconds.get(ENSEMBLE) or math.nan

    def entry(m: str, idx: np.ndarray) -> dict[str, Any]:
        vals = rows[m][idx]
        return {
            "score": 100 * float(vals.mean()),
            "ci": [100 * v for v in bootstrap_ci(vals, n_boot)],
            "n": int(idx.size),
        }

    everything = np.arange(n)
    results: dict[str, Any] = {
        "rounds": n,
        "seeds": len(runs),
        "methods": {
            m: {
                **entry(m, everything),
                "rm_seconds": seconds[m],
                "rm_seconds_vs_ensemble": seconds[m] / ens_seconds if ens_seconds else math.nan,
            }
            for m in methods
        },
        "tasks": {t: {m: entry(m, idx) for m in methods} for t, idx in by_task.items()},
    }
    singles = [m for m in methods if m.startswith(RM_PREFIX)]
    best_rm = max(singles, key=lambda m: rows[m].mean()) if singles else None
    results["best_rm"] = best_rm

    def paired(a: str, b: str) -> dict[str, Any]:
        diff = rows[a] - rows[b]
        ci = [100 * v for v in bootstrap_ci(diff, n_boot)]
        return {"diff": 100 * float(diff.mean()), "ci": ci, "against": b}

    against = (("laser-ensemble", ENSEMBLE), ("laser-best_rm", best_rm), ("laser-greedy", GREEDY))
    results["paired"] = {
        name: paired(LASER, other) for name, other in against if LASER in rows and other in rows
    }
    # Does best-of-n pay at all? Every reranking method against greedy decoding, paired.
    if GREEDY in rows:
        results["vs_greedy"] = {m: paired(m, GREEDY) for m in methods if m not in (GREEDY, ORACLE)}
    single_rows = {m: rows[m] for m in singles}
    results["curve"] = learning_curve(pools, runs, single_rows, by_task)
    if best_rm:
        # What choosing one RM per prompt could reach at most, in hindsight: LASeR's gain
        # over the best single RM can come only from the gap between these.
        best_of_task = results["curve"]["best_rm_per_task"]
        results["headroom"] = {
            "best_rm": 100 * float(rows[best_rm].mean()),
            "best_rm_per_task": 100 * float(routed(pools, single_rows, best_of_task).mean()),
            "best_rm_per_row": 100 * float(np.max([rows[m] for m in singles], axis=0).mean()),
        }
    results["selection"] = {
        m: {
            t: _shares(
                [
                    a
                    for run in runs
                    for i, a in zip(run[m].rows, run[m].arms, strict=True)
                    if pools[i].task == t
                ],
                rm_names,
            )
            for t in tasks
        }
        for m in methods
        if m in LEARNERS or m.startswith("policy:")
    }
    return results


def _shares(arms: Sequence[tuple[str, ...]], rm_names: Sequence[str]) -> dict[str, float]:
    counts = Counter(a[0] for a in arms if len(a) == 1)
    total = sum(counts.values()) or 1
    return {r: counts.get(r, 0) / total for r in rm_names}


def routed(
    pools: Sequence[Pool], reward: Mapping[str, np.ndarray], best: Mapping[str, str]
) -> np.ndarray:
    """Each row's reward under the per-task routing table `best` (task -> single RM)."""
    return np.array([reward[best[p.task]][i] for i, p in enumerate(pools)])


def learning_curve(
    pools: Sequence[Pool],
    runs: Sequence[Mapping[str, Replay]],
    singles: Mapping[str, np.ndarray],
    by_task: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Cumulative mean reward after each round (mean over seeds), at ~CURVE_POINTS rounds,
    for every method and for the per-task best RM (in hindsight: the single RM with the best
    mean on each task, a bound a fixed per-task routing table could reach). `singles`: each
    single-RM method's per-row reward (`per_row`; a fixed RM's pick does not depend on the
    stream, so it is one array)."""
    n = len(pools)
    at = np.unique(np.linspace(1, n, min(CURVE_POINTS, n)).astype(int))
    curves: dict[str, list[float]] = {}
    for m in runs[0]:
        cum = np.mean([np.cumsum(run[m].reward) for run in runs], axis=0)
        curves[m] = [float(v) for v in cum[at - 1] / at]
    best: dict[str, str] = {}
    if singles:
        best = {t: max(singles, key=lambda m: singles[m][idx].mean()) for t, idx in by_task.items()}
        reward = routed(pools, singles, best)
        first = next(iter(singles))
        cum = np.mean([np.cumsum(reward[run[first].rows]) for run in runs], axis=0)
        curves["best-rm-per-task"] = [float(v) for v in cum[at - 1] / at]
    return {"rounds": [int(a) for a in at], "mean_reward": curves, "best_rm_per_task": best}


# ---------------------------------------------------------------------------------------------
# For people


def _f(v: float, spec: str = ".1f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def format_table(results: Mapping[str, Any], title: str) -> str:
    lines = [
        f"{title}: {results['rounds']} rounds x {results['seeds']} seeds "
        "(score = 100 x mean task score; 95% bootstrap CI over rows)",
        "",
        "| method | score | 95% CI | RM s/request | vs ensemble |",
        "|---|---:|---:|---:|---:|",
    ]
    for m, r in results["methods"].items():
        lines.append(
            f"| {m} | {_f(r['score'])} | [{_f(r['ci'][0])}, {_f(r['ci'][1])}] | "
            f"{_f(r['rm_seconds'], '.3f')} | {_f(r['rm_seconds_vs_ensemble'], '.2f')}x |"
        )
    for name, p in results["paired"].items():
        lines.append(
            f"\n{name.replace('best_rm', p['against'])}: {_f(p['diff'], '+.2f')} "
            f"[{_f(p['ci'][0], '+.2f')}, {_f(p['ci'][1], '+.2f')}] (paired bootstrap, 95%)"
        )
    if results.get("vs_greedy"):
        lines += ["", "| method - greedy (paired) | diff | 95% CI |", "|---|---:|---:|"]
        for m, p in results["vs_greedy"].items():
            lo, hi = p["ci"]
            lines.append(
                f"| {m} | {_f(p['diff'], '+.2f')} | [{_f(lo, '+.2f')}, {_f(hi, '+.2f')}] |"
            )
    if "headroom" in results:
        h = results["headroom"]
        lines.append(
            f"\nSelection headroom, in hindsight: best single RM {_f(h['best_rm'])}, best RM "
            f"per task {_f(h['best_rm_per_task'])}, best RM per row {_f(h['best_rm_per_row'])}"
        )
    tasks = results["tasks"]
    if len(tasks) > 1:
        methods = list(results["methods"])
        lines += [
            "",
            "| task | n | " + " | ".join(methods) + " |",
            "|---|---:|" + "---:|" * len(methods),
        ]
        for t, rows in tasks.items():
            n = next(iter(rows.values()))["n"]
            lines.append(
                f"| {t} | {n} | " + " | ".join(_f(rows[m]["score"]) for m in methods) + " |"
            )
        # The CIs per task, for the headline methods only (all of them would not fit a line).
        headline: list[str] = [
            m
            for m in ("greedy", results.get("best_rm"), "ensemble", "laser", "oracle")
            if isinstance(m, str) and m in results["methods"]
        ]
        lines += [
            "",
            "Per task with 95% CIs (the headline methods):",
            "",
            "| task | n | " + " | ".join(headline) + " |",
            "|---|---:|" + "---:|" * len(headline),
        ]
        for t, rows in tasks.items():
            n = next(iter(rows.values()))["n"]
            cells = [
                f"{_f(rows[m]['score'])} [{_f(rows[m]['ci'][0])}, {_f(rows[m]['ci'][1])}]"
                for m in headline
            ]
            lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    for m, shares in results["selection"].items():
        lines.append(f"\nRM shares of {m} by task:")
        for t, s in shares.items():
            lines.append(f"  {t}: " + ", ".join(f"{r} {100 * v:.0f}%" for r, v in s.items() if v))
    return "\n".join(lines)


def plot(results: Mapping[str, Any], folder: Path, name: str) -> list[Path]:
    """The learning curve and the RM share per task, as PNG files in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    curve = results["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for m, values in curve["mean_reward"].items():
        style = "--" if m in ("oracle", "best-rm-per-task") else "-"
        ax.plot(curve["rounds"], values, style, label=m, linewidth=2 if m == LASER else 1)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative mean task score")
    ax.set_title(f"{name}: learning curve (mean over {results['seeds']} streams)")
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    paths = [folder / f"{name}-curve.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    selection = results["selection"].get(LASER)
    if selection:
        tasks = list(selection)
        rms = list(next(iter(selection.values())))
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(tasks)), 4.2))
        bottom = np.zeros(len(tasks))
        for rm in rms:
            share = np.array([selection[t][rm] for t in tasks])
            ax.bar(tasks, share, bottom=bottom, label=rm)
            bottom += share
        ax.set_ylabel("share of rounds")
        ax.set_title(f"{name}: RM chosen by LASeR, per task")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        paths.append(folder / f"{name}-selection.png")
        fig.savefig(paths[1], dpi=110)
        plt.close(fig)
    return paths
