"""`laser-bench selector`: latency of one LinUCB select and one update.

For each d in --dims and K in --arms it times, on the same stream of contexts and rewards:

- ``exact``: laser_serve.selector.LinUCB (kernel "auto": symmetric dsymv/dsyr from
  SYM_MIN_DIM dims up, one flat gemv over the stacked (K, d, d) A⁻¹ below);
- ``exact-full``: the same with kernel "full" (d >= 512 only, where "auto" differs);
- ``exact-1thread``: ``exact`` with BLAS limited to one thread (needs threadpoolctl);
- ``proj256``: ``exact`` with the random projection to 256 dims (d > 256 only);
- ``naive``: LinUCB as the paper's reference code computes it, inverting every A_k on each
  select. At d=4096 one select takes many seconds, so it runs until ``--naive-budget``
  seconds would be exceeded (at least once): the ``n`` column says how many samples a
  percentile rests on, and a p99 from one sample is that sample;
- ``mabwiser``: MABWiser's LinUCB (skipped if the package is missing). Its update
  re-inverts A (seconds at d=4096) and is budgeted the same way.

It also measures memory-copy bandwidth (np.copyto, all cores, STREAM convention: bytes read
plus bytes written per second) and the bandwidth bound of one exact select: reading all
K·d² float64 entries of A⁻¹ once, K·d²·8 bytes ÷ bandwidth. The symmetric kernel reads only
one triangle, so it can beat that bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from laser_bench.cli import emit

from laser_serve.selector import LinUCB

DIMS = (64, 576, 4096)
ARMS = (4, 8)
PROJ_DIM = 256
ALPHA, LAM = 0.1, 1.0
IMPLS = ("exact", "exact-full", "exact-1thread", "proj256", "naive", "mabwiser")
POOL = 64  # distinct contexts cycled through, so caches see realistic inputs


class NaiveLinUCB:
    """The reference computation: invert every A_k, then θ_k and the UCB, on each select."""

    def __init__(self, k: int, d: int, alpha: float = ALPHA, lam: float = LAM) -> None:
        self.alpha = alpha
        self.A = np.stack([lam * np.eye(d) for _ in range(k)])
        self.b = np.zeros((k, d))

    def select(self, x: np.ndarray) -> int:
        best, arm = -np.inf, 0
        for k in range(self.A.shape[0]):
            a_inv = np.linalg.inv(self.A[k])
            theta = a_inv @ self.b[k]
            p = theta @ x + self.alpha * np.sqrt(x @ a_inv @ x)
            if p > best:
                best, arm = p, k
        return arm

    def update(self, arm: int, x: np.ndarray, reward: float) -> None:
        self.A[arm] += np.outer(x, x)
        self.b[arm] += reward * x


def _mabwiser(k: int, d: int) -> tuple[Callable[[np.ndarray], Any], Callable[..., Any]] | None:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    mab = MAB(list(range(k)), LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=LAM), seed=0)
    mab.fit(decisions=[0], rewards=[0.0], contexts=np.zeros((1, d)))  # it must fit first
    return (
        lambda x: mab.predict(x[None, :]),
        lambda arm, x, r: mab.partial_fit([arm], [r], x[None, :]),
    )


def _sample(
    fn: Callable[[int], Any], max_n: int, budget_s: float, min_n: int = 1, warmup: int = 0
) -> np.ndarray:
    # Budgeted so that a slow implementation (seconds per call) still finishes in time.
    """Microseconds per call of fn(i); stops at max_n calls or before overrunning budget_s."""
    for i in range(warmup):
        fn(i)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_n:
        if len(times) >= min_n and time.perf_counter() - start + max(times) / 1e6 > budget_s:
            break
        t = time.perf_counter_ns()
        fn(warmup + len(times))
        times.append((time.perf_counter_ns() - t) / 1e3)
    return np.array(times)


def _blas_limit(threads: int | None) -> Any:
    if threads is None:
        return _Null()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _has_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


class _Stream:
    """The same contexts, arms and rewards for every implementation of one (d, K)."""

    def __init__(self, d: int, k: int) -> None:
        rng = np.random.default_rng(0)
        self.k = k
        self.X = rng.standard_normal((POOL, d))
        self.R = rng.standard_normal(POOL)

    def ctx(self, i: int) -> np.ndarray:
        return self.X[i % POOL]

    def step(self, i: int) -> tuple[int, np.ndarray, float]:
        return i % self.k, self.X[i % POOL], float(self.R[i % POOL])


def _row(d: int, k: int, impl: str, sel: np.ndarray, upd: np.ndarray) -> dict[str, Any]:
    return {
        "d": d,
        "K": k,
        "impl": impl,
        "select_us_p50": float(np.median(sel)),
        "select_us_p99": float(np.percentile(sel, 99)),
        "update_us_p50": float(np.median(upd)),
        "update_us_p99": float(np.percentile(upd, 99)),
        "select_n": len(sel),
        "update_n": len(upd),
    }


def _time_linucb(
    pol: LinUCB, stream: _Stream, fast: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Select and update timings; a few updates first so θ and A⁻¹ are not trivial."""
    for i in range(2 * len(pol.arms)):
        pol.update(*stream.step(i))
    sel = _sample(lambda i: pol.select(stream.ctx(i)), warmup=3, **fast)
    upd = _sample(lambda i: pol.update(*stream.step(i)), warmup=3, **fast)
    return sel, upd


def _bench_one(
    d: int, k: int, impls: tuple[str, ...], quick: bool, naive_budget_s: float
) -> Iterable[dict[str, Any]]:
    fast: dict[str, Any] = {
        "max_n": 300 if quick else 2000,
        "budget_s": 0.4 if quick else 1.0,
        "min_n": 5,
    }
    slow_budget = min(naive_budget_s, 5.0) if quick else naive_budget_s
    stream = _Stream(d, k)
    names = [f"rm{j}" for j in range(k)]

    variants: list[tuple[str, dict[str, Any], int | None]] = [("exact", {}, None)]
    if d >= 512:
        variants.append(("exact-full", {"kernel": "full"}, None))
        if _has_threadpoolctl():
            variants.append(("exact-1thread", {}, 1))
    if d > PROJ_DIM:
        variants.append(("proj256", {"project_to": PROJ_DIM}, None))
    for impl, kwargs, threads in variants:
        if impl not in impls:
            continue
        with _blas_limit(threads):
            sel, upd = _time_linucb(LinUCB(names, d, alpha=ALPHA, lam=LAM, **kwargs), stream, fast)
        gc.collect()
        yield _row(d, k, impl, sel, upd)

    if "naive" in impls:
        naive = NaiveLinUCB(k, d)
        for i in range(2 * k):
            naive.update(*stream.step(i))
        sel = _sample(lambda i: naive.select(stream.ctx(i)), 50, slow_budget)
        upd = _sample(lambda i: naive.update(*stream.step(i)), warmup=3, **fast)
        del naive
        gc.collect()
        yield _row(d, k, "naive", sel, upd)

    if "mabwiser" in impls:
        mab = _mabwiser(k, d)
        if mab is not None:
            m_select, m_update = mab
            sel = _sample(lambda i: m_select(stream.ctx(i)), warmup=1, **fast)
            upd = _sample(lambda i: m_update(*stream.step(i)), fast["max_n"], slow_budget / 2)
            del mab, m_select, m_update
            gc.collect()
            yield _row(d, k, "mabwiser", sel, upd)


def bench_rows(
    dims: Iterable[int] = DIMS,
    arms: Iterable[int] = ARMS,
    *,
    quick: bool = False,
    naive_budget_s: float = 20.0,
    impls: Iterable[str] = IMPLS,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (d, K, impl) with select/update percentiles in microseconds."""
    impls = tuple(impls)
    unknown = set(impls) - set(IMPLS)
    if unknown:
        raise ValueError(f"unknown impls {sorted(unknown)}; expected a subset of {IMPLS}")
    if "mabwiser" in impls and _mabwiser_missing() and log:
        log("mabwiser rows skipped: the mabwiser package is not importable")
    rows: list[dict[str, Any]] = []
    for d in dims:
        for k in arms:
            for r in _bench_one(d, k, impls, quick, naive_budget_s):
                rows.append(r)
                if log:
                    log(
                        f"d={d:5d} K={k} {r['impl']:14s} select p50 {r['select_us_p50']:12.1f} "
                        f"us (n={r['select_n']})  update p50 {r['update_us_p50']:12.1f} us "
                        f"(n={r['update_n']})"
                    )
    return rows


def _mabwiser_missing() -> bool:
    try:
        import mabwiser  # noqa: F401
    except ImportError:
        return True
    return False


def measure_bandwidth(nbytes: int = 256 << 20, repeats: int = 7) -> dict[str, float]:
    """Median memory bandwidth in GB/s using all cores (one numpy call per thread).

    ``copy_gbps``: np.copyto, counting bytes read + bytes written (the STREAM convention).
    ``read_gbps``: np.sum over the array (a read-only stream).
    """
    threads = os.cpu_count() or 1
    n = nbytes // 8 // threads * threads
    src = np.random.default_rng(0).standard_normal(n)
    dst = np.empty_like(src)
    s_parts, d_parts = np.split(src, threads), np.split(dst, threads)

    def timed(work: Callable[[int], Any]) -> float:
        ts = []
        for _ in range(repeats):
            pool = [threading.Thread(target=work, args=(j,)) for j in range(threads)]
            t = time.perf_counter()
            for th in pool:
                th.start()
            for th in pool:
                th.join()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    copy_s = timed(lambda j: np.copyto(d_parts[j], s_parts[j]))
    read_s = timed(lambda j: s_parts[j].sum())
    return {"copy_gbps": 2 * src.nbytes / copy_s / 1e9, "read_gbps": src.nbytes / read_s / 1e9}


def summarize(rows: list[dict[str, Any]], bandwidth: dict[str, float]) -> dict[str, Any]:
    """Add bandwidth bounds, speed-ups over naive and the targets to the rows."""
    by = {(r["d"], r["K"], r["impl"]): r for r in rows}
    bounds, speedups = [], []
    for (d, k, impl), r in sorted(by.items()):
        if impl != "exact":
            continue
        bound_us = k * d * d * 8 / (bandwidth["copy_gbps"] * 1e9) * 1e6
        bounds.append(
            {
                "d": d,
                "K": k,
                "bound_us": bound_us,
                "read_bound_us": k * d * d * 8 / (bandwidth["read_gbps"] * 1e9) * 1e6,
                "select_us_p50": r["select_us_p50"],
                "ratio": r["select_us_p50"] / bound_us,
            }
        )
        naive = by.get((d, k, "naive"))
        if naive:
            speedups.append(
                {"d": d, "K": k, "speedup": naive["select_us_p50"] / r["select_us_p50"]}
            )
    targets = []
    for s in speedups:
        need = {576: 100.0, 4096: 1000.0}.get(s["d"])
        if need:
            targets.append(
                {
                    "target": f"exact select >= {need:.0f}x faster than naive (d={s['d']}, "
                    f"K={s['K']})",
                    "value": s["speedup"],
                    "met": s["speedup"] >= need,
                }
            )
    for b in bounds:
        if (b["d"], b["K"]) == (4096, 8):
            targets.append(
                {
                    "target": "exact select within 2x of bandwidth bound (d=4096, K=8)",
                    "value": b["ratio"],
                    "met": b["ratio"] <= 2.0,
                }
            )
    proj = by.get((4096, 8, "proj256"))
    if proj:
        targets.append(
            {
                "target": "proj256 select p99 < 200 us (d=4096, K=8)",
                "value": proj["select_us_p99"],
                "met": proj["select_us_p99"] < 200.0,
            }
        )
    return {
        "rows": rows,
        "bandwidth_gbps": bandwidth["copy_gbps"],
        "read_bandwidth_gbps": bandwidth["read_gbps"],
        "bounds": bounds,
        "speedups": speedups,
        "targets": targets,
    }


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    if _has_threadpoolctl():
        from threadpoolctl import threadpool_info

        env["blas"] = [
            f"{i.get('internal_api')} {i.get('version')} threads={i.get('num_threads')}"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    return env


def format_report(result: dict[str, Any]) -> str:
    """Markdown tables for the rows, bounds and targets."""
    sp = {(s["d"], s["K"]): s["speedup"] for s in result["speedups"]}
    lines = [
        "| d | K | impl | select p50 µs | select p99 µs | update p50 µs | update p99 µs "
        "| n select/update | select speed-up vs naive |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        up = (
            f"{sp[(r['d'], r['K'])]:.0f}×"
            if r["impl"] == "exact" and (r["d"], r["K"]) in sp
            else ""
        )
        lines.append(
            f"| {r['d']} | {r['K']} | {r['impl']} | {_fmt(r['select_us_p50'])} "
            f"| {_fmt(r['select_us_p99'])} | {_fmt(r['update_us_p50'])} "
            f"| {_fmt(r['update_us_p99'])} | {r['select_n']}/{r['update_n']} | {up} |"
        )
    lines += [
        "",
        f"Memory bandwidth (all cores): copy {result['bandwidth_gbps']:.1f} GB/s "
        f"(read+write), read-only {result['read_bandwidth_gbps']:.1f} GB/s.",
        "",
        "| d | K | exact select p50 µs | bound µs (K·d²·8 B ÷ copy bw) | ratio "
        "| bound at read bw µs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for b in result["bounds"]:
        lines.append(
            f"| {b['d']} | {b['K']} | {_fmt(b['select_us_p50'])} | {_fmt(b['bound_us'])} "
            f"| {b['ratio']:.2f} | {_fmt(b['read_bound_us'])} |"
        )
    if result["targets"]:
        lines += ["", "| target | value | met |", "|---|---:|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {t['value']:.3g} | {'yes' if t['met'] else 'NO'} |")
    env = result.get("environment")
    if env:
        lines += ["", f"Environment: {json.dumps(env)}"]
    return "\n".join(lines)


def _fmt(us: float) -> str:
    return f"{us:,.1f}" if us < 1e5 else f"{us:,.0f}"


def run(args: argparse.Namespace) -> int:
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    environment = _environment()
    bandwidth = measure_bandwidth(repeats=3 if args.quick else 7)
    rows = bench_rows(
        args.dims,
        args.arms,
        quick=args.quick,
        naive_budget_s=args.naive_budget,
        impls=args.impls,
        log=log,
    )
    result = summarize(rows, bandwidth)
    environment["loadavg_1m_end"] = os.getloadavg()[0]  # other work on the machine skews timings
    result["environment"] = environment
    if args.json:
        emit(json.dumps(result))
    else:
        emit(format_report(result))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "selector", help="LinUCB select/update latency", description=__doc__.splitlines()[0]
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke runs)")
    p.add_argument("--dims", type=int, nargs="+", default=list(DIMS), metavar="D")
    p.add_argument("--arms", type=int, nargs="+", default=list(ARMS), metavar="K")
    p.add_argument(
        "--impls",
        nargs="+",
        default=list(IMPLS),
        choices=IMPLS,
        metavar="IMPL",
        help=f"subset of {', '.join(IMPLS)}",
    )
    p.add_argument(
        "--naive-budget",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds per slow row (naive select, MABWiser update: half); at least one call",
    )
    p.set_defaults(func=run)
