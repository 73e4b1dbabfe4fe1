"""`laser-bench longbench`: best-of-n LongBench scores of LASeR against every baseline.

Rows are LongBench v1 examples with the official prompt templates, generation lengths and
metrics (`laser_bench.longbench_eval`); the pools are built and replayed by the same engine
as every best-of-n bench (`laser_bench.replay`): every candidate scored by every RM once,
every method choosing from the same pools over --seeds shuffled streams.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from laser_bench import bestofn, gsm8k
from laser_bench import longbench_eval as lbe
from laser_bench.replay import BenchError, Row


def default_data_dir() -> Path:
    env = os.environ.get("LASER_LONGBENCH_DIR")
    return Path(env) if env else gsm8k.shared_data_dir() / "longbench"


def register(sub: Any) -> None:
    p = bestofn.add_parser(
        sub,
        "longbench",
        "best-of-n LongBench scores: LASeR vs every baseline",
        __doc__,
        "folder of LongBench v1 <task>.jsonl files "
        "(default: $LASER_LONGBENCH_DIR, else ../shared/data/longbench)",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help=f"tasks (default: each of {', '.join(lbe.TASKS)} whose file is present)",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N examples of each task")
    p.add_argument("--shortest", action="store_true", help="the --limit shortest examples instead")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap on each task's LongBench generation length (dataset2maxlen.json)",
    )
    bestofn.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return bestofn.run(args, "longbench", load_rows, lambda row: row.task in lbe.TASK_METRIC)


def load_rows(args: argparse.Namespace) -> list[Row]:
    if args.limit is not None and args.limit < 1:
        raise BenchError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise BenchError("--max-new-tokens must be at least 1")
    tasks = [t for v in args.tasks for t in v.split(",") if t] if args.tasks else None
    try:
        examples = lbe.load_examples(
            args.data or default_data_dir(), tasks, limit=args.limit, shortest=args.shortest
        )
    except (ValueError, lbe.DataNotFoundError) as exc:
        raise BenchError(str(exc)) from None
    return lbe.replay_rows(examples, lbe.load_task_config(), args.max_new_tokens)
