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

Reading a server's decision journal (``--journal``) comes with the decision log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

import numpy as np
from laser_bench.cli import emit

from laser_serve.selector.offline import LOGGERS, TARGETS, Validation, synthetic_table, validate


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


def run(args: argparse.Namespace) -> int:
    if not args.validate:
        print(
            "laser-bench ope: only --validate is available; reading a decision journal "
            "(--journal) comes with the decision log",
            file=sys.stderr,
        )
        return 2
    try:
        if args.table:
            X, R, arms = load_table(args.table)
            source = f"{args.table}: {X.shape[0]} rows, d={X.shape[1]}, K={R.shape[1]}"
        else:
            X, R = synthetic_table(args.rows, args.dim, args.arms, seed=args.table_seed)
            arms, source = None, f"synthetic: {args.rows} rows, d={args.dim}, K={args.arms}"
        result = validate(
            X,
            R,
            arms,
            loggers=args.loggers,
            targets=args.targets,
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
    p.add_argument("--validate", action="store_true", help="check the estimators (required)")
    p.add_argument("--table", metavar="FILE", help=".npz with X (N, d) and R (N, K)")
    p.add_argument("--rows", type=int, default=5000, help="synthetic table rows")
    p.add_argument("--dim", type=int, default=8, help="synthetic context dimension")
    p.add_argument("--arms", type=int, default=4, help="synthetic arms")
    p.add_argument("--table-seed", type=int, default=0, help="synthetic table seed")
    p.add_argument("--rounds", type=int, default=1000, help="logged rounds per seed")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--loggers", nargs="+", default=list(LOGGERS), metavar="SPEC")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), metavar="SPEC")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--level", type=float, default=0.95, help="interval level")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
