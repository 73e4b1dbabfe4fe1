"""`laser-bench ope`: off-policy evaluation of selector policies, checked against the truth.

``--validate`` runs laser_serve.selector.offline.validate on a full-information table: the
built-in synthetic linear-contextual one (``--rows``, ``--dim``, ``--arms``), or contexts X
(N, d) and rewards R (N, K) from an .npz file (``--table FILE``: arrays ``X`` and ``R``,
optional ``arms``, the K arm names). For every seed and logger (LinTS and ε-LinUCB by
default) it logs ``--rounds`` rounds, estimates every target's value with DM, IPS, SNIPS and
DR and compares each estimate and its bootstrap interval with the target's true value. It
prints one row per (logger, target, estimator), averaged over seeds, and the share of
(logger, target, seed) triples whose DR interval holds the truth; ``--json`` prints
``{"coverage": float, "rows": [{"logger", "target", "estimator", "seed", "estimate", "ci",
"truth", ...}, ...], ...}``.

``--journal DIR`` evaluates on a laser-serve state dir's decision log: every journal segment
(formats 1 and 2) is read, each decision is joined with its feedback (the normalized reward
the selector learned from; decisions without a reward are counted and left out), and DM,
IPS, SNIPS and DR with bootstrap intervals, the ESS and support warnings are printed for the
targets (default: random, round-robin, fixed:<each RM>, LinUCB and LinTS at other α, and
the logged policy itself). Learning targets replay with the logged context settings
(normalize, λ, projection). ``--rm-names`` names the configured RMs in order, needed only for
format-1 segments. ``--json`` prints ``{"rows": [{"target", "estimator", "estimate", "ci",
"ess", "unsupported"}, ...], "warnings": [...], "counts": {...}, "mean_reward", ...}``.

``--redis URL`` (with ``--key-prefix``, the cluster's ``cluster.key_prefix``) does the same
for replicas that learn as one: it reads the cluster's shared update stream in Redis, whose
events are decisions with their feedback, so every row has a reward (decisions still waiting
for feedback are not in the stream, and events below the oldest kept snapshot were trimmed).

``--warm-start`` checks that a warm start pays off, on the same tables (or ``--pools``, best-of-n
pool files): per seed the rows are shuffled, the first ``--warm-rows`` warm a policy
(full information, counted as ``--prior-rounds`` rounds) and the next ``--play-rounds`` are
played online by it and by a cold copy. It prints the summed regret against the best arm of
each row, mean ± standard error over seeds, per ``--policies`` spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from laser_bench.cli import emit

from laser_serve.errors import ConfigError
from laser_serve.selector.offline import (
    LOGGED,
    LOGGERS,
    TARGETS,
    Validation,
    synthetic_table,
    target_probs,
    validate,
    warm_start_regret,
)
from laser_serve.selector.ope import (
    BanditLog,
    cross_fitted_predictions,
    evaluate,
    reward_model_predictions,
)
from laser_serve.server.journal import DecisionLog, decision_log

# Targets for a journal besides fixed:<each RM>: the baselines, LinUCB and LinTS at α other
# than the server's default 0.1 (and at it), and what the server actually did.
JOURNAL_TARGETS = (
    "random",
    "round-robin",
    "linucb:alpha=0.1",
    "linucb:alpha=1.0",
    "lints:alpha=0.3",
    LOGGED,
)


def load_table(path: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """X, R and the arm names (or None) from an .npz file; ValueError says what is missing."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not an .npz archive; it needs X (N, d) and R (N, K)")
        with npz:
            missing = [key for key in ("X", "R") if key not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} has arrays {sorted(npz.files)}; it needs X (N, d) and R (N, K)"
                )
            arms = [str(a) for a in npz["arms"]] if "arms" in npz.files else None
            return npz["X"], npz["R"], arms
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def summarize(validation: Validation) -> list[dict[str, Any]]:
    """One row per (logger, target, estimator), over seeds: truth, estimate, bias, RMSE,
    mean interval width, coverage, mean ESS."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in validation.rows:
        groups[(row["logger"], row["target"], row["estimator"])].append(row)
    out = []
    for (logger, target, estimator), rows in groups.items():
        err = np.array([r["estimate"] - r["truth"] for r in rows])
        out.append(
            {
                "logger": logger,
                "target": target,
                "estimator": estimator,
                "seeds": len(rows),
                "truth": float(np.mean([r["truth"] for r in rows])),
                "estimate": float(np.mean([r["estimate"] for r in rows])),
                "bias": float(err.mean()),
                "rmse": float(np.sqrt((err**2).mean())),
                "ci_width": float(np.mean([r["ci"][1] - r["ci"][0] for r in rows])),
                "coverage": float(np.mean([r["ci"][0] <= r["truth"] <= r["ci"][1] for r in rows])),
                "ess": float(np.mean([r["ess"] for r in rows])),
            }
        )
    return out


def format_report(validation: Validation, summary: list[dict[str, Any]], config: str) -> str:
    lines = [
        f"Off-policy estimates against the truth ({config})",
        "",
        "| logger | target | estimator | truth | estimate | bias | RMSE | CI width | coverage "
        "| ESS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['logger']} | {s['target']} | {s['estimator']} | {s['truth']:.4f} "
            f"| {s['estimate']:.4f} | {s['bias']:+.4f} | {s['rmse']:.4f} | {s['ci_width']:.4f} "
            f"| {s['coverage']:.0%} | {s['ess']:.0f} |"
        )
    cov = ", ".join(f"{name} {value:.1%}" for name, value in validation.coverage.items())
    lines += ["", f"Coverage over (logger, target, seed): {cov}. Target: DR ≥ 90%."]
    return "\n".join(lines)


WARM_POLICIES = ("linucb", "lints:alpha=0.3", "linucb:epsilon=0.1")


def replay_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The context settings a replayed learning target needs to see contexts as the logging
    selector did, from a decision's logged parameters (absent: the policy's defaults).
    Rewards in the log are normalized already, so the targets do not normalize them again."""
    out: dict[str, Any] = {"reward_norm": "none"}
    if "normalize" in params:
        out["normalize"] = bool(params["normalize"])
    if "lam" in params:
        out["lam"] = float(params["lam"])
    if params.get("project_to", "none") != "none":
        out["project_to"] = int(params["project_to"])
    return out


def evaluate_journal(
    dlog: DecisionLog, targets: list[str], *, n_boot: int, level: float, seed: int = 0
) -> dict[str, Any]:
    """Every target's estimates on a joined decision log, as the JSON document."""
    log = BanditLog(
        dlog.contexts, dlog.chosen, dlog.propensities, dlog.rewards, len(dlog.arms), dlog.probs
    )
    # One reward model for every target: fitted on the log for DM, cross-fitted for DR.
    q, q_dr = reward_model_predictions(log), cross_fitted_predictions(log)
    kwargs = replay_kwargs(dlog.params)
    rows, warnings = [], []
    for target in targets:
        pi = target_probs(target, log, dlog.arms, seed=seed, **kwargs)
        result = evaluate(
            log, pi, level=level, n_boot=n_boot, seed=seed, q=q, q_dr=q_dr, arm_names=dlog.arms
        )
        for name, est in result.estimates.items():
            rows.append(
                {
                    "target": target,
                    "estimator": name,
                    "estimate": est.value,
                    "ci": list(est.ci),
                    "ess": result.ess,
                    "unsupported": result.support.unsupported_mass,
                }
            )
        warnings += [{"target": target, "warning": w} for w in result.support.warnings]
    policies: dict[str, int] = defaultdict(int)
    sources: dict[str, int] = defaultdict(int)
    for policy, source in zip(dlog.policies, dlog.sources, strict=True):
        policies[policy] += 1
        sources[source] += 1
    return {
        "rows": rows,
        "warnings": warnings,
        "counts": dlog.counts,
        "arms": list(dlog.arms),
        "dim": int(dlog.contexts.shape[1]),
        "mean_reward": float(dlog.rewards.mean()),
        "logged_policies": dict(policies),
        "sources": dict(sources),
    }


def format_journal(doc: dict[str, Any], config: str) -> str:
    c = doc["counts"]
    left_out = ", ".join(
        f"{k.replace('_', ' ')} {v}"
        for k, v in c.items()
        if v and k not in ("decisions", "rows", "raw_reward")
    )
    lines = [
        f"Off-policy estimates from {config}",
        f"{c['rows']} of {c['decisions']} decisions have a reward"
        + (f" (left out: {left_out})" if left_out else "")
        + f"; logged by {', '.join(f'{p} ({n})' for p, n in doc['logged_policies'].items())}; "
        f"mean observed reward {doc['mean_reward']:.4f}",
        "",
        "| target | estimator | estimate | CI | ESS |",
        "|---|---|---:|---|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['target']} | {r['estimator']} | {r['estimate']:.4f} "
            f"| [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] | {r['ess']:.0f} |"
        )
    if c["raw_reward"]:
        lines += ["", f"{c['raw_reward']} format-1 feedback rows are valued at their raw reward."]
    if doc["warnings"]:
        lines += [
            "",
            "Support warnings:",
            *(f"- {w['target']}: {w['warning']}" for w in doc["warnings"]),
        ]
    return "\n".join(lines)


def read_log(args: argparse.Namespace) -> tuple[DecisionLog, str]:
    """The decision log of --journal DIR or --redis URL, and where it came from."""
    if args.redis:
        from laser_serve.config import ClusterConfig
        from laser_serve.server.cluster import SharedLog, redis

        shared = SharedLog(ClusterConfig(redis_url=args.redis, key_prefix=args.key_prefix))
        try:
            return shared.decision_log(), f"{args.redis} (stream {shared.stream})"
        except redis.RedisError as exc:
            raise ValueError(f"--redis {args.redis}: {exc}") from None
    folder = Path(args.journal)
    if not folder.is_dir():
        raise ValueError(f"--journal {folder}: not a folder (pass a laser-serve state dir)")
    return decision_log(folder, args.rm_names or ()), str(folder)


def run_journal(args: argparse.Namespace) -> int:
    try:
        dlog, where = read_log(args)
        targets = args.targets or [
            *JOURNAL_TARGETS[:2],
            *(f"fixed:{a}" for a in dlog.arms),
            *JOURNAL_TARGETS[2:],
        ]
        doc = evaluate_journal(dlog, targets, n_boot=args.n_boot, level=args.level)
    except (ValueError, ConfigError) as exc:
        print(f"laser-bench ope: {exc}", file=sys.stderr)
        return 2
    config = f"{where}: K={len(dlog.arms)}, d={doc['dim']}, {args.level:.0%} intervals"
    if args.json:
        emit(json.dumps({**doc, "config": config}))
    else:
        emit(format_journal(doc, config))
    return 0


def table_of(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str] | None, str]:
    """X, R, the arm names and a description from --pools, --table or the synthetic table."""
    arms: list[str] | None
    if args.pools:
        from laser_bench.replay import BenchError, reward_table

        path = Path(args.pools)
        files = sorted(path.glob("*.jsonl.gz")) if path.is_dir() else [path]
        try:
            header, X, R = reward_table(files)
        except BenchError as exc:
            raise ValueError(str(exc)) from None
        arms = [rm["name"] for rm in header["reward_models"]]
    elif args.table:
        X, R, arms = load_table(args.table)
    else:
        X, R = synthetic_table(args.rows, args.dim, args.arms, seed=args.table_seed)
        return X, R, None, f"synthetic: {args.rows} rows, d={args.dim}, K={args.arms}"
    source = args.pools or args.table
    return X, R, arms, f"{source}: {X.shape[0]} rows, d={X.shape[1]}, K={R.shape[1]}"


def run_warm_start(args: argparse.Namespace) -> int:
    try:
        X, R, arms, source = table_of(args)
        results = [
            warm_start_regret(
                X,
                R,
                spec,
                arms,
                warm_rows=args.warm_rows,
                rounds=args.play_rounds,
                prior_rounds=args.prior_rounds,
                seeds=range(args.seeds),
                normalize=True,
            )
            for spec in args.policies
        ]
    except ValueError as exc:
        print(f"laser-bench ope: {exc}", file=sys.stderr)
        return 2
    weight = f"counted as {args.prior_rounds:g} rounds" if args.prior_rounds else "each row once"
    config = (
        f"{source}; warmed on {args.warm_rows} rows ({weight}), {args.play_rounds} other rows "
        f"played, {args.seeds} seeds"
    )
    if args.json:
        emit(json.dumps({"rows": results, "config": config}))
        return 0
    lines = [
        f"Regret of a warm start on rows it was not warmed on ({config})",
        "",
        "| policy | cold | warm | warm / cold | warm − cold (paired) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        cold, warm, diff = r["cold"], r["warm"], r["warm - cold"]
        lines.append(
            f"| {r['spec']} | {cold['mean']:.1f} ± {cold['se']:.1f} "
            f"| {warm['mean']:.1f} ± {warm['se']:.1f} | {warm['mean'] / cold['mean']:.2f} "
            f"| {diff['mean']:+.1f} ± {diff['se']:.1f} |"
        )
    emit("\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.journal and args.redis:
        print("laser-bench ope: pass --journal DIR or --redis URL, not both", file=sys.stderr)
        return 2
    if args.journal or args.redis:
        return run_journal(args)
    if args.warm_start:
        return run_warm_start(args)
    if not args.validate:
        print(
            "laser-bench ope: pass --validate (check the estimators on a table), --journal "
            "DIR or --redis URL (evaluate a server's or a cluster's decision log) or "
            "--warm-start (check a warm start)",
            file=sys.stderr,
        )
        return 2
    try:
        X, R, arms, source = table_of(args)
        result = validate(
            X,
            R,
            arms,
            loggers=args.loggers,
            targets=args.targets or list(TARGETS),
            seeds=range(args.seeds),
            rounds=args.rounds,
            n_boot=args.n_boot,
            level=args.level,
        )
    except ValueError as exc:
        print(f"laser-bench ope: {exc}", file=sys.stderr)
        return 2
    config = f"{source}; {args.rounds} rounds, {args.seeds} seeds, {args.level:.0%} intervals"
    summary = summarize(result)
    if args.json:
        emit(json.dumps({**result.to_json(), "summary": summary, "config": config}))
    else:
        emit(format_report(result, summary, config))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ope", help="off-policy evaluation, checked against the truth", description=__doc__
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--validate", action="store_true", help="check the estimators on a table")
    p.add_argument("--journal", metavar="DIR", help="evaluate a laser-serve state dir's journal")
    p.add_argument("--redis", metavar="URL", help="evaluate a cluster's shared update stream")
    p.add_argument(
        "--key-prefix", default="laser", help="with --redis: the cluster.key_prefix (laser)"
    )
    p.add_argument(
        "--rm-names",
        nargs="+",
        metavar="RM",
        help="with --journal: the configured reward models in order (format-1 segments only)",
    )
    p.add_argument("--warm-start", action="store_true", help="check a warm start's regret")
    p.add_argument("--table", metavar="FILE", help=".npz with X (N, d) and R (N, K)")
    p.add_argument("--pools", metavar="PATH", help="best-of-n pool file(s) as the table")
    p.add_argument("--rows", type=int, default=5000, help="synthetic table rows")
    p.add_argument("--dim", type=int, default=8, help="synthetic context dimension")
    p.add_argument("--arms", type=int, default=4, help="synthetic arms")
    p.add_argument("--table-seed", type=int, default=0, help="synthetic table seed")
    p.add_argument("--rounds", type=int, default=1000, help="logged rounds per seed")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--loggers", nargs="+", default=list(LOGGERS), metavar="SPEC")
    p.add_argument("--targets", nargs="+", metavar="SPEC", help="target specs (default: see above)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--level", type=float, default=0.95, help="interval level")
    p.add_argument("--policies", nargs="+", default=list(WARM_POLICIES), metavar="SPEC")
    p.add_argument("--warm-rows", type=int, default=200, help="rows the warm start sees")
    p.add_argument("--play-rounds", type=int, default=200, help="other rows played online")
    p.add_argument(
        "--prior-rounds", type=float, help="the rounds the prior counts as (default: its rows)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
