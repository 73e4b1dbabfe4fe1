"""`laser-bench load`: throughput, latency percentiles and status codes under concurrency.

It starts a laser-serve (``--generator hf`` and the SmolLM2-135M stack unless told
otherwise) or targets one with ``--server HOST:PORT``, and drives it from a separate, spawned
process (asyncio + grpc.aio, one channel, C concurrent callers) so that the client's Python
never runs on the server's event loop. Three workloads per concurrency level:

- ``short``: Rerank with caller-provided candidates and a short prompt (a question, well
  under 128 tokens), so nothing is generated and the numbers isolate the server (encode,
  select, score, bookkeeping; concurrent requests' model work is batched); ``--seconds``.
- ``long``: the same with a ``--long-tokens`` prompt (a LongBench document), where scoring
  the prompt is the work.
- ``generate``: Rerank that generates n candidates (n=2, a few tokens); a bounded number of
  requests per level.

``--soak [SECONDS]`` then runs Rerank + Feedback (the production loop, so the pending store
stays bounded) at the highest concurrency that had no errors, sampling the resident memory of
the server process and its children (vLLM's engine) every ``--rss-interval`` seconds.

Every loop is bounded in count and in time: a level stops issuing requests after its duration
or its request budget, every request has a deadline, and the driver process is terminated if
it outlives its budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser_bench.cli import emit
from laser_bench.rerank_cost import CANDIDATES, QUESTIONS

DEFAULT_LEVELS = "1,4,16,64"
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VLLM_CPU_KVCACHE_SPACE",
    "CUDA_VISIBLE_DEVICES",
)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Workload:
    """What one driver process does; picklable so it can cross into the spawned process."""

    name: str  # "short", "long" or "generate"
    target: str
    concurrency: int
    seconds: float  # stop issuing new requests after this long
    max_requests: int  # ... or after this many
    timeout: float  # per-request deadline
    n: int = 2  # generate: candidates per prompt
    max_tokens: int = 8  # generate: new tokens per candidate
    candidates: int = 4  # short, long: how many caller candidates
    long_tokens: int = 1000  # long: prompt length
    feedback: bool = False  # send Feedback after every successful Rerank
    backoff: float = 0.05  # pause after an error (RESOURCE_EXHAUSTED says: back off)
    token: str = ""  # bearer token, if the server wants one
    seed: int = 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="requests/s, latency percentiles and error codes at concurrency 1..64; memory soak",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--server", help="HOST:PORT of a running laser-serve (default: start one)")
    p.add_argument(
        "--server-pid",
        type=int,
        help="with --server: pid to sample RSS from (default: the local listener of the port)",
    )
    p.add_argument(
        "--generator",
        choices=["hf", "vllm"],
        default="hf",
        help="backend of the server this bench starts (default hf)",
    )
    p.add_argument("--config", help="TOML config for the server this bench starts")
    p.add_argument(
        "--profile",
        default="smollm2-135m",
        help="stack of the server this bench starts (default smollm2-135m)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override for the server this bench starts (repeatable)",
    )
    p.add_argument(
        "--concurrency",
        default=DEFAULT_LEVELS,
        help=f"comma-separated concurrency levels (default {DEFAULT_LEVELS})",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="short, long: seconds per level")
    p.add_argument(
        "--max-requests",
        type=int,
        default=100_000,
        help="short, long: request budget per level (a second bound next to --seconds)",
    )
    p.add_argument("--candidates", type=int, default=4, help="caller candidates per request")
    p.add_argument(
        "--gen-requests",
        type=int,
        default=8,
        help="generate workload: requests per level (at least one per caller)",
    )
    p.add_argument(
        "--gen-seconds",
        type=float,
        default=30.0,
        help="generate workload: stop issuing requests after this long per level",
    )
    p.add_argument("--gen-n", type=int, default=2, help="generate workload: candidates")
    p.add_argument("--gen-tokens", type=int, default=8, help="generate workload: new tokens")
    p.add_argument(
        "--long-tokens", type=int, default=1000, help="long workload: prompt tokens (default 1000)"
    )
    p.add_argument("--skip-short", action="store_true", help="skip the short-prompt levels")
    p.add_argument("--skip-long", action="store_true", help="skip the long-prompt levels")
    p.add_argument("--skip-generation", action="store_true", help="skip the generate levels")
    p.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=300.0,
        default=None,
        metavar="SECONDS",
        help="after the levels, run Rerank+Feedback this long (bare --soak: 300 s) and track RSS",
    )
    p.add_argument(
        "--soak-concurrency",
        type=int,
        help="soak callers (default: the most short-prompt callers without errors)",
    )
    p.add_argument("--rss-interval", type=float, default=10.0, help="soak: RSS sample period")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request deadline (s)")
    p.add_argument(
        "--token-env", help="name of an environment variable holding a bearer token to send"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run, load_parser=p)


# --- the driver (runs in the spawned process) -------------------------------------------------


def _request(w: Workload, i: int) -> Any:
    from laser_serve.client import rerank_request

    q = QUESTIONS[i % len(QUESTIONS)]
    if w.name == "generate":
        return rerank_request(
            q, n=w.n, max_tokens=w.max_tokens, seed=w.seed + i, expect_feedback=w.feedback
        )
    cands = [f"{c} ({i % 97})" for c in CANDIDATES] * (w.candidates // len(CANDIDATES) + 1)
    prompt = f"{_document(w.long_tokens)}\n\nQuestion: {q}" if w.name == "long" else q
    return rerank_request(
        prompt, candidates=cands[: w.candidates], context_text=q, expect_feedback=w.feedback
    )


def _document(tokens: int) -> str:
    """About `tokens` tokens of real text (a LongBench document when ../shared has one)."""
    from laser_bench.rerank_cost import long_prompt

    return long_prompt(tokens)


async def _drive(w: Workload) -> dict[str, Any]:
    import grpc

    from laser_serve.client import AsyncClient

    codes: Counter[str] = Counter()
    feedback_codes: Counter[str] = Counter()
    chosen_rms: Counter[str] = Counter()
    latencies: list[float] = []
    issued = 0
    rng = random.Random(w.seed)
    # No client retries: a refused request is what this bench counts.
    async with AsyncClient(w.target, timeout=w.timeout, token=w.token, retry=False) as client:
        started = time.perf_counter()
        stop_at = started + w.seconds

        async def caller() -> None:
            nonlocal issued
            while issued < w.max_requests and time.perf_counter() < stop_at:
                i = issued
                issued += 1
                t = time.perf_counter()
                try:
                    resp = await client.rerank(_request(w, i))
                except grpc.aio.AioRpcError as err:
                    codes[err.code().name] += 1
                    await asyncio.sleep(w.backoff)
                    continue
                latencies.append(time.perf_counter() - t)
                codes["OK"] += 1
                chosen_rms.update(resp.reward_models)
                if w.feedback:
                    try:
                        await client.feedback(resp.selection_id, rng.random())
                        feedback_codes["OK"] += 1
                    except grpc.aio.AioRpcError as err:
                        feedback_codes[err.code().name] += 1

        await asyncio.gather(*(caller() for _ in range(w.concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "elapsed_s": elapsed,
        "codes": dict(codes),
        "feedback_codes": dict(feedback_codes),
        "reward_models": dict(chosen_rms),
        "latencies": latencies,
    }


def _child(w: Workload, conn: Any) -> None:
    try:
        conn.send(("ok", asyncio.run(_drive(w))))
    except BaseException as exc:  # report anything to the parent instead of dying silently
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def drive(
    w: Workload,
    sample: Callable[[], None] | None = None,
    interval: float = 10.0,
    grace: float = 60.0,
) -> dict[str, Any]:
    """Run `w` in a spawned process; call `sample()` every `interval` s while it runs.

    The process is terminated if it is still running `grace` seconds after its own bound
    (duration plus one request deadline)."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(w, send), daemon=True)
    proc.start()
    send.close()
    hard_deadline = time.monotonic() + w.seconds + w.timeout + grace
    next_sample = time.monotonic() + interval
    try:
        while not recv.poll(min(1.0, interval)):
            now = time.monotonic()
            if sample is not None and now >= next_sample:
                sample()
                next_sample += interval
            if not proc.is_alive() and not recv.poll(0):
                raise RuntimeError(f"load driver exited with code {proc.exitcode}")
            if now > hard_deadline:
                raise TimeoutError(f"load driver for {w.name} x{w.concurrency} overran its bound")
        status, payload = recv.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        recv.close()
    if status != "ok":
        raise RuntimeError(f"load driver failed: {payload}")
    return payload


# --- statistics and memory ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); nan for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def summarize(w: Workload, raw: dict[str, Any]) -> dict[str, Any]:
    lat = raw["latencies"]
    codes = raw["codes"]
    ok = codes.get("OK", 0)
    row: dict[str, Any] = {
        "prompt": w.name,
        "callers": w.concurrency,
        "requests": sum(codes.values()),
        "ok": ok,
        "elapsed_s": raw["elapsed_s"],
        "rerank_per_s": ok / raw["elapsed_s"] if raw["elapsed_s"] > 0 else 0.0,
        "p50_ms": 1000 * percentile(lat, 50) if lat else None,
        "p95_ms": 1000 * percentile(lat, 95) if lat else None,
        "p99_ms": 1000 * percentile(lat, 99) if lat else None,
        "max_ms": 1000 * max(lat) if lat else None,
        "errors": {k: v for k, v in sorted(codes.items()) if k != "OK"},
        "reward_models": dict(sorted(raw.get("reward_models", {}).items())),
    }
    if raw["feedback_codes"]:
        fb = raw["feedback_codes"]
        row["feedback_ok"] = fb.get("OK", 0)
        row["feedback_errors"] = {k: v for k, v in sorted(fb.items()) if k != "OK"}
    return row


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid` and all its descendants (vLLM's engine core, workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def listening_pid(target: str) -> int | None:
    """The local process listening on the target's port, if psutil may see it."""
    import psutil

    port = int(target.rsplit(":", 1)[1])
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    return None


def machine() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none"
    if shutil.which("nvidia-smi"):  # no torch import in the client process
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            gpu = ", ".join(out.stdout.split("\n")).strip(", ") or "unknown"
        except (OSError, subprocess.SubprocessError):
            gpu = "unknown"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        # Thread settings change CPU numbers a lot; they reach a server the bench starts.
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


# --- the bench ----------------------------------------------------------------------------------


def command_line(args: argparse.Namespace) -> str:
    """The options that differ from the defaults, as a `laser-bench load` command line."""
    defaults = vars(args.load_parser.parse_args([]))
    parts = ["laser-bench", "load"]
    for key, value in vars(args).items():
        if key not in defaults or key in ("func", "load_parser") or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


def _levels(spec: str) -> list[int]:
    try:
        levels = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"--concurrency: expected comma-separated integers, got {spec!r}"
        ) from None
    if not levels or min(levels) < 1:
        raise ValueError(f"--concurrency: levels must be >= 1, got {spec!r}")
    return levels


def _check_args(args: argparse.Namespace) -> list[int]:
    levels = _levels(args.concurrency)
    for flag, value in (
        ("--seconds", args.seconds),
        ("--gen-seconds", args.gen_seconds),
        ("--timeout", args.timeout),
        ("--rss-interval", args.rss_interval),
    ):
        if not value > 0:
            raise ValueError(f"{flag}: must be > 0, got {value}")
    for flag, value in (
        ("--max-requests", args.max_requests),
        ("--candidates", args.candidates),
        ("--long-tokens", args.long_tokens),
        ("--gen-requests", args.gen_requests),
        ("--gen-n", args.gen_n),
        ("--gen-tokens", args.gen_tokens),
    ):
        if value < 1:
            raise ValueError(f"{flag}: must be >= 1, got {value}")
    if args.soak is not None and not args.soak > 0:
        raise ValueError(f"--soak: must be > 0 seconds, got {args.soak}")
    if args.soak_concurrency is not None and args.soak_concurrency < 1:
        raise ValueError(f"--soak-concurrency: must be >= 1, got {args.soak_concurrency}")
    if args.token_env and not os.environ.get(args.token_env):
        raise ValueError(f"--token-env: ${args.token_env} is empty")
    return levels


def run(args: argparse.Namespace) -> int:
    try:
        levels = _check_args(args)
    except ValueError as exc:
        print(f"laser-bench load: {exc}", file=sys.stderr)
        return 2
    if args.server:
        pid = args.server_pid or listening_pid(args.server)
        return _guarded(lambda: _bench(args, levels, args.server, pid))

    from laser_serve.server.testing import ServerProcess

    server_args = ["--generator", args.generator, "--profile", args.profile]
    if args.config:
        server_args += ["--config", args.config]
    for item in args.set:
        server_args += ["--set", item]
    with tempfile.TemporaryDirectory(prefix="laser-load-") as tmp:
        server = ServerProcess(server_args, str(Path(tmp) / "state"), Path(tmp) / "server.log")
        try:
            target = server.start(timeout=900)
        except (RuntimeError, TimeoutError) as exc:
            server.kill()
            print(f"laser-bench load: the server did not start: {exc}", file=sys.stderr)
            return 1
        try:
            assert server.proc is not None
            pid = server.proc.pid
            return _guarded(lambda: _bench(args, levels, target, pid, server_args), server)
        finally:
            if server.proc and server.proc.poll() is None:
                try:
                    server.stop(timeout=60)
                except Exception:
                    server.kill()


def _guarded(bench: Callable[[], int], server: Any = None) -> int:
    """Run the bench; a driver failure or overrun is a message (and the server's log tail)."""
    try:
        return bench()
    except (RuntimeError, TimeoutError) as exc:
        print(f"laser-bench load: {exc}", file=sys.stderr)
        if server is not None:
            print("server log (tail):\n" + server.log_tail(), file=sys.stderr)
        return 1


def _bench(
    args: argparse.Namespace,
    levels: list[int],
    target: str,
    pid: int | None,
    server_args: list[str] | None = None,
) -> int:
    token = os.environ[args.token_env] if args.token_env else ""
    server = _describe(target, token)
    if server is None:
        return 1
    server.update(started_by_bench=server_args is not None, server_args=server_args, pid=pid)
    result: dict[str, Any] = {
        "command": command_line(args),
        "machine": machine(),
        "server": server,
        "rows": [],
    }

    def workload(name: str, concurrency: int, **kw: Any) -> Workload:
        return Workload(
            name=name,
            target=target,
            concurrency=concurrency,
            timeout=args.timeout,
            token=token,
            candidates=args.candidates,
            long_tokens=args.long_tokens,
            n=args.gen_n,
            max_tokens=args.gen_tokens,
            **kw,
        )

    plans = _plans(args, levels, workload)
    # Warm-up: the first requests pay lazy initialisation (tokenizers, kernels, allocator).
    for name in dict.fromkeys(w.name for w in plans):
        drive(workload(name, 1, seconds=args.timeout, max_requests=2))
    for w in plans:
        _note(f"load: {w.name} x{w.concurrency} ...")
        row = summarize(w, drive(w))
        if pid is not None:
            rss = rss_bytes(pid)
            row["server_rss_mib"] = round(rss / MIB, 1) if rss else None
        result["rows"].append(row)
        _note("  " + _row_line(row))
    if args.soak is not None:
        result["soak"] = _soak(args, workload, _soak_callers(args, result["rows"], levels), pid)
    result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    emit(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0


def _note(msg: str) -> None:
    """Progress on stderr; stdout stays the table or the JSON."""
    print(msg, file=sys.stderr, flush=True)


def _describe(target: str, token: str) -> dict[str, Any] | None:
    """What serves at `target` (None, with a message, if it cannot be reached)."""
    import grpc

    from laser_serve.client import Client

    with Client(target, timeout=30, token=token, retry=False) as client:
        try:
            info = client.server_info()
            rms = client.reward_models()
        except grpc.RpcError as err:
            print(
                f"laser-bench load: cannot reach laser-serve at {target}: "
                f"{err.code().name} {err.details()}",
                file=sys.stderr,
            )
            return None
    return {
        "target": target,
        "generator": info.generator,
        "policy_model": info.policy_model,
        "policy": info.policy,
        "reward_models": [f"{r.name} ({r.kind})" for r in rms],
    }


def _plans(
    args: argparse.Namespace, levels: list[int], workload: Callable[..., Workload]
) -> list[Workload]:
    plans = [
        workload(name, c, seconds=args.seconds, max_requests=args.max_requests)
        for name, skip in (("short", args.skip_short), ("long", args.skip_long))
        if not skip
        for c in levels
    ]
    if not args.skip_generation:
        plans += [
            workload(
                "generate", c, seconds=args.gen_seconds, max_requests=max(args.gen_requests, c)
            )
            for c in levels
        ]
    return plans


def _soak_callers(args: argparse.Namespace, rows: list[dict[str, Any]], levels: list[int]) -> int:
    """--soak-concurrency, else the highest short level without any error, else the lowest."""
    clean = [r["callers"] for r in rows if r["prompt"] == "short" and not r["errors"]]
    return args.soak_concurrency or (max(clean) if clean else min(levels))


def _soak(
    args: argparse.Namespace,
    workload: Callable[..., Workload],
    concurrency: int,
    pid: int | None,
) -> dict[str, Any]:
    _note(f"load: soak x{concurrency} for {args.soak:.0f} s ...")
    w = workload(
        "short",
        concurrency,
        seconds=args.soak,
        max_requests=max(args.max_requests, int(args.soak * 1000)),
        feedback=True,
    )
    samples: list[tuple[float, int]] = []
    started = time.monotonic()

    def sample() -> None:
        if pid is not None:
            rss = rss_bytes(pid)
            if rss:
                samples.append((time.monotonic() - started, rss))

    sample()
    raw = drive(w, sample=sample, interval=args.rss_interval)
    sample()
    row = summarize(w, raw)
    row["seconds"] = args.soak
    row["rss_interval_s"] = args.rss_interval
    row["rss_samples"] = [[round(t, 1), round(b / MIB, 1)] for t, b in samples]
    if len(samples) >= 2:
        first, last = samples[0][1], samples[-1][1]
        peak = max(b for _, b in samples)
        row["rss_start_mib"] = round(first / MIB, 1)
        row["rss_end_mib"] = round(last / MIB, 1)
        row["rss_max_mib"] = round(peak / MIB, 1)
        row["rss_growth"] = last / first - 1
        row["rss_max_growth"] = peak / first - 1
        row["rss_ok"] = row["rss_max_growth"] <= 0.10
    return row


# --- output -------------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "0"


def _row_line(row: dict[str, Any]) -> str:
    return (
        f"{row['requests']} requests, {row['rerank_per_s']:.2f} ok/s, p50 {_ms(row['p50_ms'])} ms, "
        f"p99 {_ms(row['p99_ms'])} ms, errors: {_errors(row['errors'])}"
    )


def format_tables(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["server"]
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, GPU: {m['gpu']}; "
        f"{m['os']}, Python {m['python']}; load average at start "
        f"{'/'.join(str(v) for v in m['loadavg_start'])}, at end "
        f"{'/'.join(str(v) for v in m['loadavg_end'])} (other work on the machine adds noise)"
        + "".join(f"; {k}={v}" for k, v in m.get("env", {}).items())
        + ".",
        f"Server: {s['target']} ({'started by the bench' if s['started_by_bench'] else 'given'}), "
        f"generator {s['generator']}, policy model {s['policy_model']}, selector {s['policy']}, "
        f"reward models: {', '.join(s['reward_models'])}.",
        "",
    ]
    if result["rows"]:
        lines += [
            "| prompt | callers | requests | Rerank/s | p50 ms | p95 ms | p99 ms | max ms "
            "| errors by code | RM chosen | server RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['prompt']} | {r['callers']} | {r['requests']} | "
                f"{r['rerank_per_s']:.2f} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
                f"{_ms(r['p99_ms'])} | {_ms(r['max_ms'])} | {_errors(r['errors'])} | "
                f"{_errors(r.get('reward_models', {})) if r.get('reward_models') else '-'} | "
                f"{r.get('server_rss_mib') or '-'} |"
            )
        lines.append("")
    soak = result.get("soak")
    if soak:
        lines += [
            f"Soak: Rerank (caller candidates) + Feedback with {soak['callers']} callers "
            f"for {soak['seconds']:.0f} s, RSS of the server and its children every "
            f"{soak['rss_interval_s']:.0f} s",
            "",
            "| callers | seconds | requests | ok/s | p50 ms | p99 ms | errors | feedback ok "
            "| RSS start MiB | RSS end MiB | RSS max MiB | growth end/max | within 10% |",
            "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
        ]
        if "rss_growth" in soak:
            mem = (
                f"{soak['rss_start_mib']} | {soak['rss_end_mib']} | {soak['rss_max_mib']} | "
                f"{100 * soak['rss_growth']:+.1f}% / {100 * soak['rss_max_growth']:+.1f}% | "
                f"{'yes' if soak['rss_ok'] else 'NO'}"
            )
        else:
            mem = "- | - | - | - | (no server pid: pass --server-pid)"
        errors = dict(soak["errors"])
        for k, v in soak.get("feedback_errors", {}).items():
            errors[f"Feedback {k}"] = v
        lines.append(
            f"| {soak['callers']} | {soak['seconds']:.0f} | {soak['requests']} | "
            f"{soak['rerank_per_s']:.2f} | {_ms(soak['p50_ms'])} | {_ms(soak['p99_ms'])} | "
            f"{_errors(errors)} | {soak.get('feedback_ok', 0)} | {mem} |"
        )
        if soak["rss_samples"]:
            lines += [
                "",
                "RSS samples (s: MiB): "
                + ", ".join(f"{t:.0f}: {mib:.0f}" for t, mib in soak["rss_samples"]),
            ]
    return "\n".join(lines)


__all__ = ["Workload", "drive", "format_tables", "percentile", "register", "run", "summarize"]
