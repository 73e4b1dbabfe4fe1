"""Pure logic of `laser-bench longbench`: LongBench metrics, data, methods, statistics, table.

Nothing here talks to a server or touches a cache; `laser_bench.longbench` does the I/O and
hands candidate pools to :func:`evaluate_methods` as plain :class:`Pool` objects.

The metrics follow THUDM/LongBench (`metrics.py`, `eval.py`) so that the numbers are comparable
with published LongBench tables; where upstream has quirks they are reproduced and commented.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from laser_serve.rewards import text

# The English LongBench v1 tasks this bench runs, by category, in table order.
TASK_CATEGORIES: dict[str, tuple[str, ...]] = {
    "single-doc QA": ("narrativeqa", "qasper", "multifieldqa_en"),
    "multi-doc QA": ("hotpotqa", "2wikimqa", "musique"),
    "few-shot": ("trec", "triviaqa", "samsum"),
    "summarization": ("multi_news", "gov_report", "qmsum"),
}
TASKS: tuple[str, ...] = tuple(t for group in TASK_CATEGORIES.values() for t in group)

# eval.py: dataset2metric, restricted to TASKS.
TASK_METRIC: dict[str, str] = {
    **dict.fromkeys(("narrativeqa", "qasper", "multifieldqa_en"), "qa_f1"),
    **dict.fromkeys(("hotpotqa", "2wikimqa", "musique", "triviaqa"), "qa_f1"),
    **dict.fromkeys(("gov_report", "qmsum", "multi_news", "samsum"), "rouge_l"),
    "trec": "classification",
}
# eval.py scores only the first line of the prediction on these tasks.
FIRST_LINE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht"})
# pred.py: "chat models are better off without build prompts on these tasks".
NO_CHAT_TEMPLATE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"})

METHOD_GREEDY = "greedy"
METHOD_RANDOM = "random"
METHOD_ENSEMBLE = "ensemble"
METHOD_LASER = "laser"
METHOD_LASER_NLL = "laser-nll"
METHOD_LASER_FROZEN = "laser-frozen"
METHOD_ORACLE = "oracle"
LASER_METHODS = (METHOD_LASER, METHOD_LASER_NLL, METHOD_LASER_FROZEN)
RM_PREFIX = "rm:"


def all_methods(rm_names: Sequence[str]) -> list[str]:
    """Every method, in table order: baselines, single RMs, ensemble, LASeR variants, oracle."""
    return [
        METHOD_GREEDY,
        METHOD_RANDOM,
        *(RM_PREFIX + name for name in rm_names),
        METHOD_ENSEMBLE,
        *LASER_METHODS,
        METHOD_ORACLE,
    ]


# ---------------------------------------------------------------------------------------------
# Metrics (LongBench metrics.py)


# SQuAD normalization and token F1, as LongBench's metrics.py; the model-free RMs use the same.
normalize_answer = text.normalize_answer
f1_score = text.token_f1


def qa_f1_score(prediction: str, ground_truth: str) -> float:
    """F1 over whitespace tokens of the normalized answers."""
    return f1_score(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # imported lazily: it pulls in nltk

    # No stemming: upstream's `rouge` package does not stem either.
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_score(prediction: str, ground_truth: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of tokens) via the rouge-score package.

    Upstream uses the `rouge` package; rouge-score tokenizes slightly differently (lowercase,
    alphanumeric runs only), so summarization numbers can differ from published ones by a
    little. Empty inputs score 0, as upstream's exception path does.
    """
    if not prediction.strip() or not ground_truth.strip():
        return 0.0
    return float(_rouge_scorer().score(ground_truth, prediction)["rougeL"].fmeasure)


def classification_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """LongBench's trec/lsht score: 1/len(matches) if the gold class is among the matches.

    A class matches when it occurs as a substring of the prediction; matches that are strict
    substrings of the gold class ("Other" for gold "Other location") are dropped. Upstream
    removes them from the list while iterating over it, which skips the element after each
    removal; that is reproduced so the numbers agree. Upstream's difflib fallback sits behind
    `if em_match_list != 0`, which is always true, so it never runs and is left out here.
    """
    matches = [name for name in all_classes if name in prediction]
    for term in matches:  # noqa: B909 -- mutation during iteration is upstream's behaviour
        if term in ground_truth and term != ground_truth:
            matches.remove(term)
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def score_prediction(
    task: str, prediction: str, answers: Sequence[str], all_classes: Sequence[str] = ()
) -> float:
    """One prediction's LongBench score in [0, 1]: the maximum over the gold answers."""
    if task in FIRST_LINE_TASKS:
        prediction = prediction.lstrip("\n").split("\n")[0]
    metric = TASK_METRIC[task]
    best = 0.0
    for gold in answers:
        if metric == "qa_f1":
            value = qa_f1_score(prediction, gold)
        elif metric == "rouge_l":
            value = rouge_l_score(prediction, gold)
        else:
            value = classification_score(prediction, gold, all_classes)
        best = max(best, value)
    return best


# ---------------------------------------------------------------------------------------------
# Data


class DataNotFoundError(Exception):
    """No usable LongBench files; the message says where to put them."""


@dataclass(frozen=True)
class Example:
    task: str
    key: str  # hash of input and context: `_id` is null on some rows
    input: str
    context: str
    answers: tuple[str, ...]
    all_classes: tuple[str, ...] = ()
    length: int = 0
    id: str | None = None


def example_key(input_text: str, context: str) -> str:
    """Stable example key: sha256 over input and context (32 hex characters)."""
    digest = hashlib.sha256(json.dumps([input_text, context], ensure_ascii=False).encode())
    return digest.hexdigest()[:32]


def missing_data_message(data_dir: Path, tasks: Sequence[str]) -> str:
    files = ", ".join(f"{t}.jsonl" for t in tasks)
    return (
        f"no LongBench data in {data_dir.absolute()} (looked for {files}).\n"
        "Put the LongBench v1 JSONL files there (one file per task named <task>.jsonl, from "
        "data.zip of the THUDM/LongBench dataset on Hugging Face), or point --data or "
        "$LASER_LONGBENCH_DIR at the folder that holds them."
    )


def load_task(path: Path, task: str) -> list[Example]:
    """Read one `<task>.jsonl`; rows with the same input and context are kept once."""
    examples: list[Example] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                input_text, context = row.get("input") or "", row.get("context") or ""
                answers = tuple(str(a) for a in row["answers"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataNotFoundError(f"{path}:{lineno}: not a LongBench row ({exc})") from None
            key = example_key(input_text, context)
            if key in seen:
                continue
            seen.add(key)
            examples.append(
                Example(
                    task=task,
                    key=key,
                    input=input_text,
                    context=context,
                    answers=answers,
                    all_classes=tuple(row.get("all_classes") or ()),
                    length=int(row.get("length") or 0),
                    id=row.get("_id"),
                )
            )
    return examples


def load_examples(
    data_dir: Path,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    shortest: bool = False,
) -> dict[str, list[Example]]:
    """Examples of every selected task whose file exists, capped at `limit` per task.

    `shortest` takes the `limit` shortest examples (by characters of context and input; the
    `length` field is inferred on rebuilt rows) instead of the first ones in the file.
    Raises DataNotFoundError when no selected task has a file.
    """
    selected = list(tasks) if tasks else list(TASKS)
    unknown = [t for t in selected if t not in TASK_METRIC]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    found: dict[str, list[Example]] = {}
    for task in selected:
        path = data_dir / f"{task}.jsonl"
        if not path.is_file():
            continue
        examples = load_task(path, task)
        if shortest:
            examples = sorted(examples, key=lambda e: len(e.context) + len(e.input))
        found[task] = examples[:limit] if limit is not None else examples
    if not any(found.values()):
        raise DataNotFoundError(missing_data_message(data_dir, selected))
    return found


@dataclass(frozen=True)
class TaskConfig:
    prompts: Mapping[str, str]
    maxlen: Mapping[str, int]


def load_task_config() -> TaskConfig:
    """The bench's own copy of LongBench's dataset2prompt.json and dataset2maxlen.json."""
    root = resources.files("laser_bench") / "config"
    prompts = json.loads((root / "dataset2prompt.json").read_text(encoding="utf-8"))
    maxlen = json.loads((root / "dataset2maxlen.json").read_text(encoding="utf-8"))
    return TaskConfig(prompts=prompts, maxlen={k: int(v) for k, v in maxlen.items()})


def build_prompt(example: Example, config: TaskConfig) -> str:
    return config.prompts[example.task].format(context=example.context, input=example.input)


def uses_chat_template(task: str) -> bool:
    return task not in NO_CHAT_TEMPLATE_TASKS


def replay_rows(
    examples: Mapping[str, Sequence[Example]], config: TaskConfig, max_new_tokens: int | None
) -> list[Any]:
    """LongBench examples as replay-engine rows, with the official prompt and length."""
    from laser_bench.replay import Row

    return [
        Row(
            task=ex.task,
            key=ex.key,
            prompt=build_prompt(ex, config),
            question=ex.input,
            answers=ex.answers,
            max_new_tokens=min(config.maxlen[ex.task], max_new_tokens or 10**9),
            chat=uses_chat_template(ex.task),
            all_classes=ex.all_classes,
        )
        for exs in examples.values()
        for ex in exs
    ]
