"""Training and held-out data: GSM8K built in, generic JSONL, StrategyQA-style yes/no.

Each row becomes an Example with the gold answer normalized once (a number as
`extract_answer` writes it, "yes"/"no", or lower-cased text), so scoring a response is one
comparison. Prompts ask for GSM8K's own '#### <answer>' ending on numeric data, so the
evaluation and the verifier RM (both `extract_answer`) read the same answer.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.errors import ConfigError
from laser_serve.rewards.verifier import extract_answer

KINDS = ("numeric", "yesno", "text")
INSTRUCTIONS = {
    "numeric": "Solve the problem step by step. End with a line '#### <answer>', where <answer> "
    "is the final number only.",
    "yesno": "Think step by step, then end with 'Final answer: yes' or 'Final answer: no'.",
    "text": "Think step by step, then end with 'Final answer: <answer>'.",
}
_FINAL = re.compile(r"final answer\s*:?", re.IGNORECASE)
_YESNO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NUMERIC = re.compile(r"\s*-?[\d,]*\.?\d+\s*")
_TRUTHY = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


@dataclass(frozen=True)
class Example:
    question: str
    answer: str  # normalized gold answer
    kind: str  # numeric | yesno | text

    def messages(self) -> list[dict[str, str]]:
        """The chat turn the policy answers (and the RMs see as the request)."""
        return [{"role": "user", "content": f"{self.question}\n\n{INSTRUCTIONS[self.kind]}"}]


@dataclass
class Dataset:
    name: str
    train: list[Example]
    eval: list[Example]
    source: str  # where the files were read from


def predicted_answer(text: str, kind: str) -> str | None:
    """The answer a response gives, normalized like the gold answers."""
    if kind == "numeric":
        return extract_answer(text)
    marked = _FINAL.search(text) is not None
    tail = _FINAL.split(text)[-1]  # after the last "Final answer:" if there is one
    if kind == "yesno":
        match = _YESNO.search(tail)
        return match.group(1).lower() if match else None
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    return _normalize_text(lines[0] if marked else lines[-1])


def is_correct(text: str, example: Example) -> bool:
    return predicted_answer(text, example.kind) == example.answer


def follows_format(text: str, kind: str) -> bool:
    """Whether the response ends the way the prompt asked (a signal a 135M model can move)."""
    return "####" in text if kind == "numeric" else _FINAL.search(text) is not None


def make_example(question: str, answer: Any) -> Example:
    """Normalize one row; the answer's form decides the kind."""
    if isinstance(answer, bool):
        return Example(question, "yes" if answer else "no", "yesno")
    text = str(answer).strip()
    if text.lower() in _TRUTHY:
        return Example(question, _TRUTHY[text.lower()], "yesno")
    if "####" in text or _NUMERIC.fullmatch(text):
        gold = extract_answer(text)
        if gold is not None:
            return Example(question, gold, "numeric")
    return Example(question, _normalize_text(text), "text")


def _normalize_text(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A .jsonl file (one object a line) or a .json list of objects."""
    try:
        raw = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            rows = json.loads(raw)
            if not isinstance(rows, list):
                raise ConfigError(f"{path} must hold a JSON list of objects")
            return rows
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


def _to_examples(rows: list[dict[str, Any]], key: str, path: Path) -> list[Example]:
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or key not in row or "answer" not in row:
            raise ConfigError(f"{path} row {i + 1} needs the fields {key!r} and 'answer'")
        out.append(make_example(str(row[key]), row["answer"]))
    return out


def default_data_dir(name: str) -> Path | None:
    """GSM8K: $LASER_GSM8K_DIR, else ../shared/data/gsm8k next to the repository."""
    if name != "gsm8k":
        return None
    env = os.environ.get("LASER_GSM8K_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k"


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in (".jsonl", ".json"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def load_dataset(
    name: str, data_dir: str = "", train_size: int = 0, eval_size: int = 100, seed: int = 0
) -> Dataset:
    """Read train and held-out examples; ConfigError says what is missing and what to do."""
    if name not in ("gsm8k", "jsonl", "strategyqa"):
        raise ConfigError(f"unknown --data {name!r}; use gsm8k, jsonl or strategyqa")
    folder = Path(data_dir).expanduser() if data_dir else default_data_dir(name)
    if folder is None:
        raise ConfigError(f"--data {name} needs --data-dir DIR holding train.jsonl (or .json)")
    if not folder.is_dir():
        hint = " (or set $LASER_GSM8K_DIR)" if name == "gsm8k" else ""
        raise ConfigError(f"data folder {folder} does not exist; pass --data-dir DIR{hint}")
    train_file = _find(folder, ("train",))
    if train_file is None:
        raise ConfigError(f"{folder} has no train.jsonl or train.json")
    key = "prompt" if name == "jsonl" else "question"
    train = _to_examples(read_rows(train_file), key, train_file)
    eval_file = _find(folder, ("test", "dev", "eval"))
    rng = np.random.default_rng(seed)
    if eval_file is not None:
        held_out = _to_examples(read_rows(eval_file), key, eval_file)[:eval_size]
    else:  # hold out a seeded slice of the training file
        order = rng.permutation(len(train))
        held_out = [train[i] for i in order[:eval_size]]
        train = [train[i] for i in order[eval_size:]]
    if train_size:
        train = [train[i] for i in np.random.default_rng(seed).permutation(len(train))[:train_size]]
    if not train:
        raise ConfigError(f"{train_file} has no training examples left")
    return Dataset(name, train, held_out, str(folder))
