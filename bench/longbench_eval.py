"""Pure logic of `laser-bench longbench`: LongBench metrics, data, methods, statistics, table.

Nothing here talks to a server or touches a cache; `laser_bench.longbench` does the I/O and
hands candidate pools to :func:`evaluate_methods` as plain :class:`Pool` objects.

The metrics follow THUDM/LongBench (`metrics.py`, `eval.py`) so that the numbers are comparable
with published LongBench tables; where upstream has quirks they are reproduced and commented.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

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


# ---------------------------------------------------------------------------------------------
# Methods over candidate pools


@dataclass
class Pool:
    """One example's candidates with every RM's scores, as the server returned them."""

    task: str
    key: str
    answers: Sequence[str]
    candidates: Sequence[str]
    rm_scores: Mapping[str, Sequence[float]]  # RM name -> one score per candidate
    context: Sequence[float]
    mean_logprob: Sequence[float] = ()
    all_classes: Sequence[str] = ()
    generate_seconds: float = 0.0
    rm_seconds: Mapping[str, float] = field(default_factory=dict)
    greedy: str | None = None
    greedy_generate_seconds: float = 0.0
    truncated: bool = False
    id: str | None = None

    def qualities(self) -> list[float]:
        """Every candidate's task score in [0, 1]."""
        return [
            score_prediction(self.task, c, self.answers, self.all_classes) for c in self.candidates
        ]


@dataclass(frozen=True)
class Choice:
    """What one method picked for one example: candidate index (-1: greedy) and RMs called."""

    candidate: int
    rms: tuple[str, ...]
    score: float  # task score of the picked answer, in [0, 1]


def _default_linucb(**kwargs: Any) -> Any:
    from laser_serve.selector import LinUCB

    return LinUCB(**kwargs)


def _default_combine(scores: np.ndarray) -> np.ndarray:
    from laser_serve.selector import combine_scores

    return combine_scores(scores)


def frozen_split(pools: Sequence[Pool], order: Sequence[int], train_fraction: float) -> set[int]:
    """Training indices for laser-frozen: per task, the first part of the shuffled order.

    Split per task so that every task keeps at least one held-out example.
    """
    by_task: dict[str, list[int]] = {}
    for i in order:
        by_task.setdefault(pools[i].task, []).append(i)
    train: set[int] = set()
    for idx in by_task.values():
        n_train = min(int(train_fraction * len(idx)), len(idx) - 1)
        train.update(idx[:n_train])
    return train


def evaluate_methods(
    pools: Sequence[Pool],
    rm_names: Sequence[str],
    methods: Sequence[str],
    seed: int = 0,
    alpha: float = 0.1,
    train_fraction: float = 0.5,
    qualities: Sequence[Sequence[float]] | None = None,
    linucb_factory: Callable[..., Any] = _default_linucb,
    combine: Callable[[np.ndarray], np.ndarray] = _default_combine,
) -> dict[str, list[Choice | None]]:
    """Run every method on the same pools; result[method][i] is the choice for pools[i].

    The seed shuffles the order in which the online learners see the examples and drives the
    random baseline; the pools themselves are fixed. One LinUCB learns across all tasks (the
    context vector tells tasks apart), as one server would. None marks an example a method
    did not evaluate (laser-frozen's training part).
    """
    rm_names = list(rm_names)
    if qualities is None:
        qualities = [p.qualities() for p in pools]
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(pools))]
    out: dict[str, list[Choice | None]] = {m: [None] * len(pools) for m in methods}
    score_mats = [np.array([p.rm_scores[r] for r in rm_names], dtype=float) for p in pools]

    def pick(i: int, rm: str) -> Choice:
        j = int(np.argmax(score_mats[i][rm_names.index(rm)]))
        return Choice(j, (rm,), float(qualities[i][j]))

    def new_linucb(reward_norm: str, offset: int) -> Any:
        dim = len(pools[order[0]].context) if pools else 0
        if dim == 0:
            raise ValueError("the server returned no context vector; LASeR methods need one")
        # Unit-normalized contexts, as the server's default selector config: alpha then means
        # the same thing whatever the encoder's scale.
        return linucb_factory(
            arms=rm_names,
            dim=dim,
            alpha=alpha,
            normalize=True,
            seed=seed + offset,
            reward_norm=reward_norm,
        )

    def ctx(i: int) -> np.ndarray:
        return np.asarray(pools[i].context, dtype=float)

    for method in methods:
        if method.startswith(RM_PREFIX):
            rm = method[len(RM_PREFIX) :]
            if rm not in rm_names:
                raise ValueError(f"unknown reward model in method {method!r}")
            for i in order:
                out[method][i] = pick(i, rm)
        elif method == METHOD_GREEDY:
            for i in order:
                text = pools[i].greedy or ""
                p = pools[i]
                out[method][i] = Choice(
                    -1, (), score_prediction(p.task, text, p.answers, p.all_classes)
                )
        elif method == METHOD_RANDOM:
            arms = rng.integers(len(rm_names), size=len(order))
            for i, arm in zip(order, arms, strict=True):
                out[method][i] = pick(i, rm_names[int(arm)])
        elif method == METHOD_ENSEMBLE:
            for i in order:
                j = int(np.argmax(combine(score_mats[i])))
                out[method][i] = Choice(j, tuple(rm_names), float(qualities[i][j]))
        elif method == METHOD_ORACLE:
            for i in order:
                j = int(np.argmax(qualities[i]))
                out[method][i] = Choice(j, (), float(qualities[i][j]))
        elif method == METHOD_LASER:
            bandit = new_linucb("none", 1)
            for i in order:
                choice = pick(i, rm_names[bandit.choose(ctx(i))[0]])
                bandit.update(choice.rms[0], ctx(i), choice.score)
                out[method][i] = choice
        elif method == METHOD_LASER_NLL:
            # Label-free reward of the paper's best-of-n setting: the chosen candidate's mean
            # token log-prob (negative mean NLL), quantile-normalized by the selector.
            bandit = new_linucb("quantile", 2)
            for i in order:
                choice = pick(i, rm_names[bandit.choose(ctx(i))[0]])
                logprobs = pools[i].mean_logprob
                reward = (
                    logprobs[choice.candidate] if len(logprobs) > choice.candidate else math.nan
                )
                if math.isfinite(reward):
                    bandit.update(choice.rms[0], ctx(i), float(reward))
                out[method][i] = choice
        elif method == METHOD_LASER_FROZEN:
            bandit = new_linucb("none", 3)
            train = frozen_split(pools, order, train_fraction)
            for i in (i for i in order if i in train):
                choice = pick(i, rm_names[bandit.choose(ctx(i))[0]])
                bandit.update(choice.rms[0], ctx(i), choice.score)
            for i in (i for i in order if i not in train):
                out[method][i] = pick(i, rm_names[bandit.choose(ctx(i))[0]])
        else:
            raise ValueError(f"unknown method {method!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Statistics and the results object


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over examples."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1:
        return (float(arr[0]), float(arr[0]))
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(arr.size, size=(n_boot, arr.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))


def stratified_bootstrap_ci(
    per_task: Sequence[Sequence[float]], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """CI of the mean of task means, resampling examples within each task."""
    arrays = [np.asarray(v, dtype=float) for v in per_task if len(v)]
    if not arrays:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for arr in arrays:
        boot += arr[rng.integers(arr.size, size=(n_boot, arr.size))].mean(axis=1)
    boot /= len(arrays)
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail)))


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def _heldout_mean(
    runs: Sequence[Mapping[str, Sequence[Choice | None]]], method: str, indices: range
) -> float:
    """Mean over seeds of `method`'s score on the examples laser-frozen held out in that seed."""
    return _mean(
        _mean(
            run[method][i].score  # type: ignore[union-attr]
            for i in indices
            if run[METHOD_LASER_FROZEN][i] is not None and run[method][i] is not None
        )
        for run in runs
    )


def summarize(
    pools_by_task: Mapping[str, Sequence[Pool]],
    runs: Sequence[Mapping[str, Sequence[Choice | None]]],
    methods: Sequence[str],
    rm_names: Sequence[str],
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The results object from one evaluate_methods run per seed over the concatenated pools.

    Scores are 100 × mean; `score` is the mean over seeds of each seed's task score and
    `seed_std` its spread; the CI bootstraps examples (each example's score averaged over the
    seeds in which it was evaluated). Per-example choices go to `examples`.
    """
    tasks = list(pools_by_task)
    offsets: dict[str, range] = {}
    start = 0
    for task in tasks:
        offsets[task] = range(start, start + len(pools_by_task[task]))
        start += len(pools_by_task[task])

    results: dict[str, Any] = {"tasks": {}, "average": {}, "average_detail": {}, "task_info": {}}
    per_example: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for task in tasks:
        pools = pools_by_task[task]
        rows: dict[str, Any] = {}
        for method in methods:
            chosen = [[run[method][i] for i in offsets[task]] for run in runs]
            seed_scores = [_mean(c.score for c in seed if c) for seed in chosen]
            ex_scores = [
                _mean(seed[k].score for seed in chosen if seed[k])
                for k in range(len(pools))
                if any(seed[k] for seed in chosen)
            ]
            per_example[method][task] = ex_scores
            flat = [(k, c) for seed in chosen for k, c in enumerate(seed) if c]
            lo, hi = bootstrap_ci(ex_scores, n_boot=n_boot)
            if method == METHOD_GREEDY:
                gen = _mean(pools[k].greedy_generate_seconds for k, _ in flat)
            else:
                gen = _mean(pools[k].generate_seconds for k, _ in flat)
            rows[method] = {
                "score": 100 * _mean(seed_scores),
                "seed_std": 100 * float(np.std(seed_scores)) if seed_scores else math.nan,
                "seed_scores": [100 * s for s in seed_scores],
                "ci_low": 100 * lo,
                "ci_high": 100 * hi,
                # examples scored per seed (laser-frozen: the held-out part)
                "n_examples": round(_mean(sum(1 for c in seed if c) for seed in chosen)),
                "rm_calls_per_example": _mean(len(c.rms) for _, c in flat),
                "rm_seconds_per_example": _mean(
                    sum(pools[k].rm_seconds.get(r, 0.0) for r in c.rms) for k, c in flat
                ),
                "generate_seconds_per_example": gen,
            }
        if METHOD_LASER_FROZEN in rows:
            # Every method on exactly the held-out examples laser-frozen was scored on, so its
            # score can be compared like for like.
            rows[METHOD_LASER_FROZEN]["heldout_scores"] = {
                m: 100 * _heldout_mean(runs, m, offsets[task])
                for m in methods
                if m != METHOD_LASER_FROZEN
            }
        results["tasks"][task] = rows
        results["task_info"][task] = {
            "n_examples": len(pools),
            "truncated": sum(bool(p.truncated) for p in pools),
        }

    for method in methods:
        present = [t for t in tasks if per_example[method].get(t)]
        task_rows = [results["tasks"][t][method] for t in present]
        lo, hi = stratified_bootstrap_ci([per_example[method][t] for t in present], n_boot=n_boot)
        score = _mean(r["score"] for r in task_rows)
        seed_avgs = [
            float(np.mean(s)) for s in zip(*(r["seed_scores"] for r in task_rows), strict=True)
        ]
        results["average"][method] = score
        results["average_detail"][method] = {
            "score": score,
            "seed_std": float(np.std(seed_avgs)) if seed_avgs else math.nan,
            "seed_scores": seed_avgs,
            "ci_low": 100 * lo,
            "ci_high": 100 * hi,
            **{
                name: _mean(r[name] for r in task_rows)
                for name in (
                    "rm_calls_per_example",
                    "rm_seconds_per_example",
                    "generate_seconds_per_example",
                )
            },
        }

    # Share of each RM chosen by the LASeR variants, per task (over seeds and examples).
    selection: dict[str, dict[str, dict[str, float]]] = {}
    for method in (m for m in methods if m in LASER_METHODS):
        selection[method] = {}
        for task in tasks:
            counts = Counter(
                c.rms[0] for run in runs for i in offsets[task] if (c := run[method][i])
            )
            total = sum(counts.values()) or 1
            selection[method][task] = {rm: counts.get(rm, 0) / total for rm in rm_names}
    results["selection"] = selection

    results["examples"] = {
        task: [
            {
                "key": p.key,
                "id": p.id,
                "truncated": bool(p.truncated),
                "candidate_scores": [100 * q for q in p.qualities()],
                "choices": [
                    {
                        m: {"candidate": c.candidate, "rms": list(c.rms), "score": 100 * c.score}
                        for m in methods
                        if (c := run[m][offsets[task][k]])
                    }
                    for run in runs
                ],
            }
            for k, p in enumerate(pools_by_task[task])
        ]
        for task in tasks
    }
    return results


# ---------------------------------------------------------------------------------------------
# Presentation


def _label(method: str) -> str:
    if method == METHOD_ORACLE:
        return "oracle (upper bound)"
    if method == METHOD_LASER_FROZEN:
        return "laser-frozen*"
    return method


def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _block(title: str, rows: Mapping[str, Mapping[str, Any]], seeds: int) -> list[str]:
    head = (
        f"{'method':<26} {'score':>7} {'±seed':>6} {'95% CI':>15} "
        f"{'RM calls/ex':>11} {'RM s/ex':>9} {'gen s/ex':>9}"
    )
    lines = [title, head, "-" * len(head)]
    for method, r in rows.items():
        ci = f"[{_fmt(r['ci_low'], '.1f')}, {_fmt(r['ci_high'], '.1f')}]"
        spread = _fmt(r.get("seed_std", math.nan), ".2f") if seeds > 1 else ""
        lines.append(
            f"{_label(method):<26} {_fmt(r['score'], '.2f'):>7} {spread:>6} {ci:>15} "
            f"{_fmt(r['rm_calls_per_example'], '.2f'):>11} "
            f"{_fmt(r['rm_seconds_per_example'], '.3f'):>9} "
            f"{_fmt(r['generate_seconds_per_example'], '.2f'):>9}"
        )
    laser, ens = rows.get(METHOD_LASER), rows.get(METHOD_ENSEMBLE)
    if laser and ens and ens["rm_seconds_per_example"] > 0:
        ratio = laser["rm_seconds_per_example"] / ens["rm_seconds_per_example"]
        lines.append(f"RM seconds laser / ensemble: {ratio:.2f}x")
    return lines


def format_table(results: Mapping[str, Any]) -> str:
    """Per-task blocks and an average block, for people."""
    seeds = int(results.get("config", {}).get("seeds", 1))
    lines: list[str] = []
    for task, rows in results["tasks"].items():
        info = results.get("task_info", {}).get(task, {})
        title = f"{task} ({TASK_METRIC[task]}; {info.get('n_examples', '?')} examples"
        title += f", {info['truncated']} truncated by the server)" if info.get("truncated") else ")"
        lines += _block(title, rows, seeds) + [""]
    lines += _block(
        f"average over {len(results['tasks'])} task(s)", results["average_detail"], seeds
    )
    frozen = next(
        (r[METHOD_LASER_FROZEN] for r in results["tasks"].values() if METHOD_LASER_FROZEN in r),
        None,
    )
    if frozen is not None:
        lines.append(
            "* laser-frozen: learned on the first part of each task (--train-fraction), scored\n"
            "  only on the held-out rest, with no updates. Others on the same held-out examples:"
        )
        for task, rows in results["tasks"].items():
            held = rows[METHOD_LASER_FROZEN].get("heldout_scores", {})
            shown = [m for m in (METHOD_ENSEMBLE, METHOD_LASER, METHOD_ORACLE) if m in held]
            if shown:
                pairs = ", ".join(f"{m} {_fmt(held[m], '.2f')}" for m in shown)
                lines.append(f"  {task}: {pairs}")
    if any(METHOD_ORACLE in r for r in results["tasks"].values()):
        lines.append(
            "oracle: best sampled candidate by the gold metric; an upper bound, not a method."
        )
    return "\n".join(lines)


def plot_selection(results: Mapping[str, Any], path: Path) -> None:
    """Stacked bars: share of each RM chosen by the LASeR variants, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    selection = results.get("selection") or {}
    methods = [m for m in LASER_METHODS if m in selection]
    if not methods:
        raise ValueError("no LASeR method in the results; nothing to plot")
    fig, axes = plt.subplots(
        1, len(methods), figsize=(max(4.0, 1.1 * len(results["tasks"])) * len(methods), 4.2)
    )
    axes = np.atleast_1d(axes)
    for ax, method in zip(axes, methods, strict=True):
        tasks = list(selection[method])
        rms = sorted({rm for shares in selection[method].values() for rm in shares})
        bottom = np.zeros(len(tasks))
        for rm in rms:
            share = np.array([selection[method][t].get(rm, 0.0) for t in tasks])
            ax.bar(tasks, share, bottom=bottom, label=rm)
            bottom += share
        ax.set_title(f"RM chosen by {method}")
        ax.set_ylabel("share of examples")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=45)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
