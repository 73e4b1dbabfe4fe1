"""`laser-bench mix`: one interleaved stream of GSM8K, LongBench QA and summarization, with one
bandit across all of it, as a real server would see it.

The stream: the first 850 GSM8K test rows, every LongBench QA and few-shot row present, the
samsum rows and the first 50 multi_news rows (--limit N caps every task at its first N rows),
in a fixed pseudo-random order (by content hash) so that any prefix of the build is a fair
sample of all of it; each replay seed then shuffles it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from laser_bench import bestofn, gsm8k
from laser_bench import longbench_eval as lbe
from laser_bench.replay import Row, content_key

QA_TASKS = ("narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique")
FEW_SHOT = ("trec", "triviaqa")
SUMMARIZATION = ("samsum", "multi_news")
TASKS = ("gsm8k", *QA_TASKS, *FEW_SHOT, *SUMMARIZATION)
# What a 2-core CPU build affords: GSM8K rows, multi_news rows and summary length.
DEFAULT_CAPS = {"gsm8k": 850, "multi_news": 50}
SUMMARY_TOKENS = 128  # multi_news asks for 512


def register(sub: Any) -> None:
    p = bestofn.add_parser(
        sub,
        "mix",
        "best-of-n on a GSM8K + LongBench stream, one bandit",
        __doc__,
        "folder with gsm8k/test.jsonl and longbench/<task>.jsonl (default ../shared/data)",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N rows of each task")
    bestofn.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return bestofn.run(
        args,
        "mix",
        lambda a: load_rows(a.data or gsm8k.shared_data_dir(), a.limit),
        lambda row: row.task in TASKS,
    )


def load_rows(data: Path, limit: int | None = None) -> list[Row]:
    def cap(task: str) -> int | None:
        caps = [c for c in (DEFAULT_CAPS.get(task), limit) if c is not None]
        return min(caps) if caps else None

    rows = gsm8k.load_rows(data / "gsm8k", "test", cap("gsm8k"))
    examples = lbe.load_examples(data / "longbench", [*QA_TASKS, *FEW_SHOT, *SUMMARIZATION])
    examples = {t: exs[: cap(t)] for t, exs in examples.items()}
    rows += lbe.replay_rows(examples, lbe.load_task_config(), SUMMARY_TOKENS)
    return sorted(rows, key=lambda r: content_key("mix-order", r.task, r.key))
