"""The command line shared by the best-of-n benches (gsm8k, mix, longbench).

Each bench supplies its rows; this module builds (or reads) the pools, replays the methods
over `--seeds` streams and prints the tables or `--json`. Pools shipped under bench/pools
seed the build cache, so a build resumes from them, and `--pools DIR` replays shipped pools
with no models and no data at all.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from laser_bench import methods as M
from laser_bench import replay, report
from laser_bench.cli import emit
from laser_bench.replay import BenchError, Row

SHIPPED = Path(__file__).resolve().parent / "pools"


def add_parser(sub: Any, name: str, help: str, doc: str | None, data_help: str) -> Any:
    """A best-of-n bench's subcommand with its --data folder (the caller adds its own
    row options, then `add_arguments`)."""
    p = sub.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=None, metavar="DIR", help=data_help)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    build = p.add_argument_group("pool build")
    build.add_argument(
        "--profile",
        default=None,
        help="embedded stack whose policy and RMs build the pools (default: the server's)",
    )
    build.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override the stack's configuration, as laser-serve --set",
    )
    build.add_argument("--n", type=int, default=8, help="candidates per row (default 8)")
    build.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    build.add_argument("--gen-seed", type=int, default=0, help="sampling seed (per-row seeds)")
    build.add_argument("--concurrency", type=int, default=16, help="rows generating at once")
    build.add_argument("--cache-dir", type=Path, default=None, help="build cache folder")
    build.add_argument(
        "--no-build", action="store_true", help="replay only rows already built; build nothing"
    )
    build.add_argument("--build-only", action="store_true", help="build, then stop")
    build.add_argument(
        "--ship", type=Path, default=None, metavar="FILE", help="write the pools (.jsonl.gz)"
    )
    rep = p.add_argument_group("replay")
    rep.add_argument(
        "--pools",
        type=Path,
        default=None,
        metavar="DIR",
        help="replay the pool files in DIR (e.g. bench/pools) without building anything",
    )
    rep.add_argument(
        "--rows",
        type=_row_range,
        default=None,
        metavar="A:B",
        help="replay only rows A to B of the built stream (1-based, inclusive; 'A:' runs to the"
        " end), e.g. 449: to leave out a dev split of rows 1-448",
    )
    rep.add_argument("--methods", nargs="+", default=None, help="methods (default: all)")
    rep.add_argument("--seeds", type=int, default=20, help="shuffled streams (default 20)")
    rep.add_argument("--alpha", type=float, default=0.1, help="LinUCB exploration (default 0.1)")
    rep.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    out.add_argument("--plot-dir", type=Path, default=None, help="write PNG plots here")


def run(
    args: argparse.Namespace,
    name: str,
    load_rows: Callable[[argparse.Namespace], list[Row]],
    keep: Callable[[Row], bool],
) -> int:
    """Entry point of a best-of-n bench; `keep` selects this bench's rows of a pool file."""
    started = time.perf_counter()
    try:
        _check(args)
        if args.pools:
            header, records = _read_dir(args.pools, keep)
            rm_names = [rm["name"] for rm in header["reward_models"]]
        else:
            settings = _settings(args)
            rows = load_rows(args)
            cache = replay.Cache(args.cache_dir or replay.default_cache_dir())
            builder = replay.Builder(settings, cache)
            for path in sorted(SHIPPED.glob("*.jsonl.gz")):
                shipped_header, shipped = replay.read_pools(path)
                if _same_build(shipped_header, replay.pool_header(settings, "")):
                    replay.seed_cache(cache, shipped_header, shipped)
            if not args.no_build:
                builder.build(rows, args.concurrency, progress=True)
            records, missing = replay.cached_records(rows, builder)
            if missing:
                print(
                    f"laser-bench {name}: {missing} of {len(rows)} rows are not built yet; "
                    "replaying the rest",
                    file=sys.stderr,
                )
            header = replay.pool_header(settings, _command(name))
            rm_names = [rm.name for rm in settings.reward_models]
            if args.ship:
                replay.write_pools(args.ship, header, records)
        if args.build_only:
            return 0
        if args.rows:
            first, last = args.rows
            records = records[first - 1 : last]
            header = {**header, "rows": f"{first}:{last or ''}"}
        if not records:
            raise BenchError("no built rows to replay")
        results = evaluate(args, replay.pools_from_records(records, rm_names), rm_names)
        results["config"] = {**header, "bench": name, "wall_seconds": time.perf_counter() - started}
    except BenchError as exc:
        print(f"laser-bench {name}: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(json.dumps(_jsonable(results), indent=1))
    if args.plot_dir:
        report.plot(results, args.plot_dir, name)
    emit(
        json.dumps(_jsonable(results), indent=1)
        if args.json
        else report.format_table(results, name)
    )
    return 0


def evaluate(args: argparse.Namespace, pools: Sequence[replay.Pool], rm_names: list[str]) -> dict:
    methods = args.methods or M.default_methods(rm_names)
    options = M.Options(alpha=args.alpha)
    try:
        runs = [M.replay(pools, rm_names, methods, seed, options) for seed in range(args.seeds)]
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    return report.summarize(pools, runs, rm_names, n_boot=args.bootstrap)


def _check(args: argparse.Namespace) -> None:
    if args.n < 1 or args.seeds < 1 or args.concurrency < 1:
        raise BenchError("--n, --seeds and --concurrency must be at least 1")
    if args.temperature < 0:
        raise BenchError("--temperature must be >= 0")
    if args.pools and not args.pools.is_dir():
        raise BenchError(f"--pools {args.pools}: not a folder")


def _row_range(text: str) -> tuple[int, int | None]:
    """'A:B' or 'A:' as (A, B or None), 1-based and inclusive."""
    first, sep, last = text.partition(":")
    try:
        bounds = (int(first), int(last) if last else None)
    except ValueError:
        bounds = (0, None)
    if not sep or bounds[0] < 1 or (bounds[1] is not None and bounds[1] < bounds[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected A:B or A: with 1 <= A <= B")
    return bounds


def _settings(args: argparse.Namespace) -> replay.Settings:
    from laser_serve import config as config_module
    from laser_serve.errors import ConfigError

    try:
        config = config_module.load(None, args.set, args.profile)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    return replay.Settings(
        policy=config.generator.model,
        n=args.n,
        temperature=args.temperature,
        gen_seed=args.gen_seed,
        max_model_len=config.generator.max_model_len,
        encoder=config.context.encoder,
        reward_models=tuple(config.reward_models),
    )


def _same_build(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("policy", "policy_sha256", "max_model_len", "n", "temperature", "top_p", "gen_seed")
    return all(a.get(k) == b.get(k) for k in keys)


def _read_dir(folder: Path, keep: Callable[[Row], bool]) -> tuple[dict, list]:
    files = sorted(folder.glob("*.jsonl.gz"))
    if not files:
        raise BenchError(f"--pools {folder}: no .jsonl.gz pool files")
    return replay.read_pool_files(files, keep)


def _command(name: str) -> str:
    return (
        "laser-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:2] == [name]
        else f"laser-bench {name}"
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
