"""`laser-bench longbench`: best-of-n LongBench scores of LASeR against every baseline.

For each example the server generates n candidates once and every reward model scores every
candidate once (one Rerank call with score_with_all); a second call takes a greedy sample.
All methods then choose from that same pool, so they differ only in how they choose. Pools are
cached on disk, keyed by policy model, example, n, sampling seed and RM names, so later runs
with more methods or seeds compare identical candidates without generating again.

The seeds of --seeds change the example order seen by the online learners and the random
baseline; they do not resample candidates (that is --gen-seed, part of the cache key).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from laser_bench import longbench_eval as lbe
from laser_bench.cli import emit

CACHE_VERSION = 1
RPC_OPTIONS = [
    # LongBench prompts run to megabytes of text.
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


class BenchError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _default_data_dir() -> Path:
    return Path(os.environ.get("LASER_LONGBENCH_DIR") or "data/longbench")


def _default_cache_dir() -> Path:
    home = os.environ.get("LASER_HOME") or os.path.join("~", ".cache", "laser-serve")
    return Path(home).expanduser() / "cache" / "longbench"


def _split_list(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]


def register(subparsers: Any) -> None:
    """Add the `longbench` sub-command."""
    p = subparsers.add_parser(
        "longbench",
        help="best-of-n LongBench scores: LASeR vs every baseline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of LongBench v1 <task>.jsonl files "
        "(default: $LASER_LONGBENCH_DIR, else ./data/longbench)",
    )
    data.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help=f"tasks to run, space or comma separated (default: each of {', '.join(lbe.TASKS)} "
        "whose file is present)",
    )
    data.add_argument("--limit", type=int, default=None, help="at most K examples per task")
    data.add_argument(
        "--shortest",
        action="store_true",
        help="take the --limit shortest examples of each task instead of the first ones",
    )
    gen = p.add_argument_group("candidates")
    gen.add_argument("--n", type=int, default=8, help="candidates per example (default 8)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    gen.add_argument("--gen-seed", type=int, default=0, help="sampling seed of the candidates")
    gen.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap on each task's LongBench generation length (dataset2maxlen.json)",
    )
    gen.add_argument(
        "--max-input-tokens",
        type=int,
        default=None,
        help="cut prompts in the middle to this many policy tokens before sending (default: "
        "the server cuts to its window minus the generation length)",
    )
    meth = p.add_argument_group("methods")
    meth.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help="methods to evaluate (default all: greedy random rm:<name>... ensemble laser "
        "laser-nll laser-frozen oracle)",
    )
    meth.add_argument(
        "--seeds", type=int, default=1, help="repeat over this many shuffles (default 1)"
    )
    meth.add_argument("--seed", type=int, default=0, help="first shuffle seed")
    meth.add_argument("--alpha", type=float, default=0.1, help="LinUCB exploration alpha")
    meth.add_argument(
        "--train-fraction",
        type=float,
        default=0.5,
        help="share of each task laser-frozen learns on; it is scored on the rest",
    )
    meth.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for CIs")
    srv = p.add_argument_group("server")
    srv.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help="a running laser-serve; without it an embedded server is started",
    )
    srv.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for the embedded server, repeatable; write --server-arg=--flag",
    )
    srv.add_argument("--concurrency", type=int, default=1, help="Rerank calls in flight")
    srv.add_argument("--timeout", type=float, default=3600.0, help="seconds per Rerank call")
    srv.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="pool cache (default: $LASER_HOME/cache/longbench, LASER_HOME=~/.cache/laser-serve)",
    )
    srv.add_argument("--refresh", action="store_true", help="regenerate cached pools")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the results as JSON")
    out.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    out.add_argument("--plot", type=Path, default=None, help="RM-choice plot (PNG) here")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Files


def _jsonable(obj: Any) -> Any:
    """Strict JSON: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, ensure_ascii=False, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


class PoolCache:
    """One JSON file per (example, generation settings) under root/<policy model>/<task>/."""

    def __init__(self, root: Path, identity: dict[str, Any]) -> None:
        self.root = root
        self.identity = identity

    def entry_key(self, task: str, example_key: str, max_tokens: int) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            **self.identity,
            "task": task,
            "example": example_key,
            "max_tokens": max_tokens,
        }

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        model = _slug(str(self.identity.get("policy_model", "")))
        return self.root / model / key["task"] / f"{key['example']}-{digest}.json"

    def load(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return record if record.get("key") == key else None

    def store(self, key: dict[str, Any], record: dict[str, Any]) -> None:
        atomic_write_json(self.path(key), {**record, "key": key})


# ---------------------------------------------------------------------------------------------
# Server I/O


@contextlib.contextmanager
def server_target(address: str | None, server_args: Sequence[str]) -> Iterator[str]:
    """The given address, or an embedded server started for the duration of the run."""
    if address:
        yield address
        return
    try:
        from laser_serve.server.testing import running_server
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("laser_serve"):
            raise
        raise BenchError(
            "the embedded server is not available in this build; start `laser-serve` and pass "
            "--server HOST:PORT"
        ) from None
    with running_server(list(server_args)) as target:
        yield target


def _candidate_record(cand: Any) -> dict[str, Any]:
    return {
        "text": cand.text,
        "token_count": cand.token_count,
        "finish_reason": cand.finish_reason,
        "mean_logprob": cand.mean_logprob,
        "rm_scores": dict(cand.rm_scores),
    }


def _rerank_request(
    pb: Any, example: lbe.Example, prompt: str, task_tag: str, **fields: Any
) -> Any:
    req = pb.RerankRequest(context_text=example.input, task=task_tag, **fields)
    if lbe.uses_chat_template(example.task):
        req.messages.append(pb.Message(role="user", content=prompt))
    else:
        req.prompt = prompt
    return req


def fetch_pool_record(
    stub: Any,
    pb: Any,
    example: lbe.Example,
    prompt: str,
    *,
    n: int,
    temperature: float,
    max_tokens: int,
    gen_seed: int,
    rm_names: Sequence[str],
    task_tag: str,
    timeout: float,
) -> dict[str, Any]:
    """Two Rerank calls: n sampled candidates scored by every RM, and one greedy sample."""
    pooled = stub.Rerank(
        _rerank_request(
            pb,
            example,
            prompt,
            task_tag,
            sampling=pb.SamplingParams(
                n=n, temperature=temperature, max_tokens=max_tokens, seed=gen_seed
            ),
            policy="ensemble",  # any policy works: the bench only reads the scores
            score_with_all=True,
            return_all_scores=True,
            return_context=True,
        ),
        timeout=timeout,
    )
    candidates = [_candidate_record(c) for c in pooled.candidates]
    if len(candidates) != n:
        raise BenchError(f"server returned {len(candidates)} candidates for n={n}")
    for cand in candidates:
        missing = [r for r in rm_names if r not in cand["rm_scores"]]
        if missing:
            raise BenchError(
                f"server did not score every candidate with every RM (missing {missing}); "
                "it must honour score_with_all"
            )
    greedy = stub.Rerank(
        _rerank_request(
            pb,
            example,
            prompt,
            task_tag,
            sampling=pb.SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, seed=gen_seed),
            policy=f"fixed:{rm_names[0]}",
        ),
        timeout=timeout,
    )
    return {
        "candidates": candidates,
        "context": list(pooled.context),
        "generate_seconds": pooled.timings.generate_seconds,
        "rm_seconds": dict(pooled.timings.rm_seconds),
        "truncated": pooled.truncated,
        "greedy": {
            "text": greedy.chosen_text,
            "generate_seconds": greedy.timings.generate_seconds,
            "truncated": greedy.truncated,
        },
    }


def record_to_pool(
    example: lbe.Example, record: dict[str, Any], rm_names: Sequence[str]
) -> lbe.Pool:
    cands = record["candidates"]
    return lbe.Pool(
        task=example.task,
        key=example.key,
        id=example.id,
        answers=example.answers,
        all_classes=example.all_classes,
        candidates=[c["text"] for c in cands],
        rm_scores={r: [float(c["rm_scores"][r]) for c in cands] for r in rm_names},
        mean_logprob=[
            math.nan if c.get("mean_logprob") is None else float(c["mean_logprob"]) for c in cands
        ],
        context=record["context"],
        generate_seconds=float(record.get("generate_seconds") or 0.0),
        rm_seconds={k: float(v) for k, v in (record.get("rm_seconds") or {}).items()},
        greedy=record["greedy"]["text"],
        greedy_generate_seconds=float(record["greedy"].get("generate_seconds") or 0.0),
        truncated=bool(record.get("truncated")),
    )


def collect_pools(
    args: argparse.Namespace,
    target: str,
    examples: dict[str, list[lbe.Example]],
    config: lbe.TaskConfig,
) -> tuple[dict[str, list[lbe.Pool]], dict[str, Any]]:
    """Pools for every example (from the cache or the server) and the server's description."""
    import grpc
    from tqdm import tqdm

    from laser_serve.api import pb, rpc

    with grpc.insecure_channel(target, options=RPC_OPTIONS) as channel:
        stub = rpc.LaserStub(channel)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=120)
        rm_names = [
            r.name for r in stub.ListRewardModels(pb.ListRewardModelsRequest()).reward_models
        ]
        if not rm_names:
            raise BenchError("the server has no reward models")
        if info.max_n and args.n > info.max_n:
            raise BenchError(f"--n {args.n} exceeds the server's max_n {info.max_n}")
        server = {
            "policy_model": info.policy_model,
            "generator": info.generator,
            "context_encoder": info.context_encoder,
            "context_dim": info.context_dim,
            "max_model_len": info.max_model_len,
            "version": info.version,
            "reward_models": rm_names,
        }
        cache = PoolCache(
            args.cache_dir or _default_cache_dir(),
            {
                "policy_model": info.policy_model,
                "max_model_len": info.max_model_len,
                "reward_models": sorted(rm_names),
                "n": args.n,
                "gen_seed": args.gen_seed,
                "temperature": args.temperature,
            },
        )
        # Tags outside the server's allow-list would be rejected; they only label metrics.
        allowed = set(info.tasks)

        def max_tokens(task: str) -> int:
            return _task_max_tokens(config, task, args.max_new_tokens)

        fit = _prompt_cutter(info.policy_model, args.max_input_tokens)

        def job(ex: lbe.Example) -> tuple[dict[str, Any], bool]:
            key = cache.entry_key(ex.task, ex.key, max_tokens(ex.task))
            key["max_input_tokens"] = args.max_input_tokens
            if not args.refresh and (record := cache.load(key)) is not None:
                return record, True
            record = fetch_pool_record(
                stub,
                pb,
                ex,
                fit(lbe.build_prompt(ex, config)),
                n=args.n,
                temperature=args.temperature,
                max_tokens=max_tokens(ex.task),
                gen_seed=args.gen_seed,
                rm_names=rm_names,
                task_tag=ex.task if not allowed or ex.task in allowed else "",
                timeout=args.timeout,
            )
            cache.store(key, record)
            return record, False

        todo = [ex for exs in examples.values() for ex in exs]
        records: dict[tuple[str, str], dict[str, Any]] = {}
        hits = 0
        with (
            ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool,
            tqdm(total=len(todo), desc="longbench", unit="ex", file=sys.stderr) as bar,
        ):
            futures = {pool.submit(job, ex): ex for ex in todo}
            for fut in as_completed(futures):
                ex = futures[fut]
                records[(ex.task, ex.key)], hit = fut.result()
                hits += hit
                bar.set_postfix_str(f"{ex.task}, {hits} cached")
                bar.update()
    pools = {
        task: [record_to_pool(ex, records[(task, ex.key)], rm_names) for ex in exs]
        for task, exs in examples.items()
    }
    server["cache_hits"] = hits
    server["cache_dir"] = str(cache.root)
    return pools, server


# ---------------------------------------------------------------------------------------------
# The command


def _validate(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise BenchError("--n must be at least 1")
    if args.seeds < 1:
        raise BenchError("--seeds must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise BenchError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise BenchError("--max-new-tokens must be at least 1")
    if not 0.0 <= args.train_fraction < 1.0:
        raise BenchError("--train-fraction must be in [0, 1)")
    if args.temperature < 0:
        raise BenchError("--temperature must be >= 0")
    if args.gen_seed < 0:
        raise BenchError("--gen-seed must be >= 0")


def evaluate(
    args: argparse.Namespace, pools: dict[str, list[lbe.Pool]], rm_names: Sequence[str]
) -> dict[str, Any]:
    """Every method over every seed on the fixed pools, summarized into the results object."""
    methods = _split_list(args.methods) or lbe.all_methods(rm_names)
    known = set(lbe.all_methods(rm_names))
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BenchError(f"unknown method(s) {unknown}; known: {', '.join(sorted(known))}")
    flat = [p for ps in pools.values() for p in ps]
    qualities = [p.qualities() for p in flat]
    seeds = [args.seed + s for s in range(args.seeds)]
    try:
        runs = [
            lbe.evaluate_methods(
                flat,
                rm_names,
                methods,
                seed=seed,
                alpha=args.alpha,
                train_fraction=args.train_fraction,
                qualities=qualities,
            )
            for seed in seeds
        ]
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    return lbe.summarize(pools, runs, methods, rm_names, n_boot=args.bootstrap)


def run(args: argparse.Namespace) -> int:
    """Entry point of `laser-bench longbench`."""
    import grpc

    started = time.perf_counter()
    try:
        _validate(args)
        data_dir = args.data or _default_data_dir()
        try:
            examples = lbe.load_examples(
                data_dir, _split_list(args.tasks), limit=args.limit, shortest=args.shortest
            )
        except ValueError as exc:
            raise BenchError(str(exc)) from None
        config = lbe.load_task_config()
        with server_target(args.server, args.server_arg) as target:
            pools, server = collect_pools(args, target, examples, config)
        results = evaluate(args, pools, server["reward_models"])
        results["config"] = {
            **server,
            "data": str(data_dir),
            "tasks": list(pools),
            "limit": args.limit,
            "shortest": args.shortest,
            "n": args.n,
            "temperature": args.temperature,
            "gen_seed": args.gen_seed,
            "max_new_tokens": {t: _task_max_tokens(config, t, args.max_new_tokens) for t in pools},
            "seeds": args.seeds,
            "seed_values": [args.seed + s for s in range(args.seeds)],
            "alpha": args.alpha,
            "train_fraction": args.train_fraction,
            "wall_seconds": time.perf_counter() - started,
        }
        if args.plot and not results["selection"]:
            raise BenchError("--plot needs a LASeR method among --methods")
    except (BenchError, lbe.DataNotFoundError) as exc:
        print(f"laser-bench longbench: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        print(f"laser-bench longbench: server call failed: {code}: {details}", file=sys.stderr)
        return 1
    if args.out:
        atomic_write_json(args.out, results)
    if args.plot:
        lbe.plot_selection(results, args.plot)
    if args.json:
        emit(json.dumps(_jsonable(results), ensure_ascii=False, indent=2))
    else:
        emit(lbe.format_table(results))
    return 0


def _prompt_cutter(policy_model: str, max_input_tokens: int | None) -> Any:
    """LongBench's middle truncation with the server's own rule and the policy tokenizer."""
    if not max_input_tokens:
        return lambda prompt: prompt
    from laser_serve.generation import truncate_middle
    from laser_serve.models import policy_tokenizer

    tokenizer = policy_tokenizer(policy_model)

    def cut(prompt: str) -> str:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_input_tokens:
            return prompt
        return tokenizer.decode(truncate_middle(ids, max_input_tokens))

    return cut


def _task_max_tokens(config: lbe.TaskConfig, task: str, cap: int | None) -> int:
    return min(config.maxlen[task], cap) if cap else config.maxlen[task]
