"""`laser-bench gsm8k`: best-of-n on GSM8K (exact final-answer match), on the replay engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from laser_bench import bestofn
from laser_bench.replay import BenchError, Row, content_key

INSTRUCTION = (
    "Solve the problem step by step, briefly, then give the final answer as a number after '####'."
)
MAX_NEW_TOKENS = 256


def shared_data_dir() -> Path:
    """../shared/data next to the repository (LongBench and GSM8K rows)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_data_dir() -> Path:
    return shared_data_dir() / "gsm8k"


def register(sub: Any) -> None:
    p = bestofn.add_parser(
        sub,
        "gsm8k",
        "best-of-n on GSM8K: LASeR vs every baseline",
        __doc__,
        "folder with <split>.jsonl, or one JSONL file (default ../shared/data/gsm8k)",
    )
    p.add_argument("--split", default="test", help="train or test (default test)")
    p.add_argument("--limit", type=int, default=None, help="the first N rows")
    bestofn.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return bestofn.run(
        args,
        "gsm8k",
        lambda a: load_rows(a.data or default_data_dir(), a.split, a.limit),
        lambda row: row.task == "gsm8k",
    )


def load_rows(path: Path, split: str = "test", limit: int | None = None) -> list[Row]:
    """GSM8K rows from a folder holding <split>.jsonl, or from one JSONL file."""
    file = path / f"{split}.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise BenchError(
            f"no GSM8K data at {file}: point --data at a folder with {split}.jsonl "
            "(rows with 'question' and 'answer', the answer ending in '#### <number>')"
        )
    rows: list[dict[str, Any]] = []
    with file.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                question, answer = str(item["question"]), str(item["answer"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BenchError(f"{file}:{lineno}: not a GSM8K row ({exc})") from None
            rows.append(
                Row(
                    task="gsm8k",
                    key=content_key("gsm8k", question),
                    prompt=f"{question}\n\n{INSTRUCTION}",
                    question=question,
                    answers=(answer,),
                    max_new_tokens=MAX_NEW_TOKENS,
                )
            )
    return rows
