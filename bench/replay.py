"""The replay engine of every best-of-n bench: build candidate pools once, replay in seconds.

A best-of-n benchmark has an expensive half and a cheap half. The expensive half builds one
*pool* per row:

- ``generate``: n sampled candidates and one greedy answer from the policy (vLLM, one seed
  per row, so a row's candidates do not depend on which rows share its batch);
- ``context``: the context vector the selector sees (the server's encoder);
- ``score:<rm>``: every RM's score of every candidate, with the seconds it took.

Each stage of each row is cached on disk under a key that hashes everything its result
depends on (model, prompt, sampling settings, seed, candidates, RM identity), so a build
resumes where it stopped, adding an RM scores only with that RM, and changing the prompt
template regenerates. The cheap half (`laser_bench.methods`) runs every selection method
over the cached pools, in many shuffles, in seconds.

Pools a table reports on ship under ``bench/pools/`` as gzipped JSONL: a header line
(command, model hashes, sampling settings, CPU flags, versions, date) and one line per row.
``--pools DIR`` replays them without building anything.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import hashlib
import json
import math
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.durable import atomic_write

CACHE_VERSION = 1
POOL_FORMAT = "laser-serve/pool"
POOL_VERSION = 1


class BenchError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ---------------------------------------------------------------------------------------------
# Rows: what a bench asks the policy, and how an answer is scored


@dataclass(frozen=True)
class Row:
    """One benchmark prompt. `chat` rows are sent as one user turn (chat template applied),
    the others as a plain prompt (LongBench's few-shot tasks)."""

    task: str
    key: str  # stable content hash of the row's inputs
    prompt: str
    question: str  # what the context encoder and the RMs see as the question
    answers: tuple[str, ...]
    max_new_tokens: int
    chat: bool = True
    all_classes: tuple[str, ...] = ()

    @property
    def messages(self) -> list[dict[str, str]] | None:
        return [{"role": "user", "content": self.prompt}] if self.chat else None


def content_key(*parts: Any) -> str:
    """sha256 over the JSON of `parts`, 32 hex characters."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def quality(task: str, text: str, answers: Sequence[str], all_classes: Sequence[str] = ()) -> float:
    """A candidate's task score in [0, 1]: exact final-answer match on GSM8K, LongBench's
    official metric on LongBench tasks."""
    if task == "gsm8k":
        from laser_serve.rewards.verifier import extract_answer

        gold = extract_answer(answers[0])
        return float(gold is not None and extract_answer(text) == gold)
    from laser_bench import longbench_eval as lbe

    return lbe.score_prediction(task, text, answers, all_classes)


# ---------------------------------------------------------------------------------------------
# Settings and cache


@dataclass(frozen=True)
class Settings:
    """Everything a pool's content depends on besides the rows."""

    policy: str
    n: int = 8
    temperature: float = 0.6
    top_p: float = 1.0
    gen_seed: int = 0
    max_model_len: int = 2048
    encoder: str = "sentence"  # context.encoder of the server config
    reward_models: tuple[Any, ...] = ()  # RewardModelConfig, in arm order

    def identity(self) -> dict[str, Any]:
        from laser_serve.models import GGUF_MODELS

        gguf = GGUF_MODELS.get(self.policy)
        return {
            "policy": self.policy,
            "policy_sha256": gguf.sha256 if gguf else None,
            "max_model_len": self.max_model_len,
        }

    def row_seed(self, row: Row) -> int:
        return (self.gen_seed * 1_000_003 + int(row.key[:8], 16)) % (2**31)


POOL_DTYPE = "float32"


def pool_rm(rm: Any) -> Any:
    """An RM config as pools are built and re-scored with (see `POOL_DTYPE`)."""
    return dataclasses.replace(rm, dtype=POOL_DTYPE)


def rm_identity(rm: Any) -> dict[str, Any]:
    """What an RM's scores depend on (its name is not: renaming keeps the scores)."""
    from laser_serve.models import GGUF_MODELS
    from laser_serve.rewards import SCORING_VERSION

    gguf = GGUF_MODELS.get(rm.model)
    return {
        "kind": rm.kind,
        "model": rm.model,
        "model_sha256": gguf.sha256 if gguf else None,
        "max_length": rm.max_length,
        "scoring": SCORING_VERSION.get(rm.kind, 1),
    }


def default_cache_dir() -> Path:
    from laser_serve.models import laser_home

    return laser_home() / "cache" / "replay"


class Cache:
    """One JSON file per (stage, row) under root/<stage>/<task>/; written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, stage: str, task: str, row_key: str, key: dict[str, Any]) -> Path:
        digest = content_key(CACHE_VERSION, key)[:16]
        return self.root / _slug(stage) / task / f"{row_key[:16]}-{digest}.json"

    def load(self, stage: str, task: str, row_key: str, key: dict[str, Any]) -> Any | None:
        try:
            record = json.loads(self.path(stage, task, row_key, key).read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return record["value"] if record.get("key") == key else None

    def store(self, stage: str, task: str, row_key: str, key: dict[str, Any], value: Any) -> None:

        path = self.path(stage, task, row_key, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = json.dumps({"key": key, "value": value}, ensure_ascii=False, allow_nan=False)
        atomic_write(path, blob.encode())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:100] or "x"


# ---------------------------------------------------------------------------------------------
# The build: generate, then context and scores, chunk by chunk


def _candidate(c: Any) -> dict[str, Any]:
    lp = c.mean_logprob
    return {
        "text": c.text,
        "tokens": c.token_count,
        "finish": c.finish_reason,
        "logprob": lp if math.isfinite(lp) else None,
    }


class Builder:
    """Builds pools stage by stage; the one place that knows each stage's cache key."""

    def __init__(self, settings: Settings, cache: Cache) -> None:
        from laser_serve.config import Config
        from laser_serve.generation import PromptBuilder
        from laser_serve.models import policy_tokenizer

        self.settings, self.cache = settings, cache
        self.prompts = PromptBuilder(policy_tokenizer(settings.policy), settings.max_model_len)
        self.config = Config()
        self.config.context.encoder = settings.encoder
        self.config.generator.model = settings.policy
        self.config.generator.max_model_len = settings.max_model_len
        # Pools are reference data: fp32 on every machine, so that rows built on CPUs with
        # and without bf16 in hardware agree (and re-score to tolerance anywhere).
        self.config.generator.dtype = POOL_DTYPE
        self._prompt: dict[str, Any] = {}

    def prompt(self, row: Row) -> Any:
        return self.prompts.build(
            None if row.chat else row.prompt, row.messages, row.max_new_tokens
        )

    def stages(self, row: Row) -> list[tuple[str, dict[str, Any]]]:
        """(stage, cache key) of every stage of a row, in build order."""
        s = self.settings
        prompt_ids = content_key(list(self.prompt(row).token_ids))
        gen = {
            **s.identity(),
            "task": row.task,
            "row": row.key,
            "prompt_ids": prompt_ids,
            "max_new_tokens": row.max_new_tokens,
            "n": s.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.row_seed(row),
        }
        context = {
            "encoder": encoder_identity(self.config),
            "question": row.question,
            "prompt_ids": prompt_ids,
        }
        scores = [
            (f"score-{rm.name}", {"rm": rm_identity(rm), "generate": gen}) for rm in s.reward_models
        ]
        return [("generate", gen), ("context", context), *scores]

    def load(self, row: Row, stage: str, key: dict[str, Any]) -> Any | None:
        return self.cache.load(stage, row.task, row.key, key)

    def record(self, row: Row) -> dict[str, Any] | None:
        """The row's cached stages as one record, or None until every stage is built."""
        record: dict[str, Any] = {"scores": {}}
        for stage, key in self.stages(row):
            value = self.load(row, stage, key)
            if value is None:
                return None
            entry = {"key": key, "value": value}
            if stage.startswith("score-"):
                record["scores"][stage.removeprefix("score-")] = entry
            else:
                record[stage] = entry
        return record

    def build(self, rows: Sequence[Row], concurrency: int, progress: bool, chunk: int = 32) -> None:
        """Build every missing stage of every row, `chunk` rows at a time (generate the chunk
        with `concurrency` rows in flight, then score it), so an interrupted build keeps
        whole rows and a long one yields finished rows early."""
        asyncio.run(self._build(list(rows), concurrency, progress, chunk))

    async def _build(self, rows: list[Row], concurrency: int, progress: bool, chunk: int) -> None:
        from tqdm import tqdm

        todo = [r for r in rows if self.record(r) is None]
        if not todo:
            return
        generator = None
        scorer: tuple[Any, list[Any]] | None = None
        loop = asyncio.get_running_loop()
        bar = tqdm(total=len(todo), desc="build", unit="row", file=sys.stderr, disable=not progress)
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                ungenerated = [r for r in part if self.load(r, *self.stages(r)[0]) is None]
                if ungenerated and generator is None:
                    generator = await self._start_generator()
                if ungenerated:
                    await self._generate(generator, ungenerated, concurrency)
                if scorer is None:
                    scorer = await loop.run_in_executor(None, self._load_scorers)
                await loop.run_in_executor(None, self._score, part, *scorer)
                bar.update(len(part))
        finally:
            bar.close()
            if generator is not None:
                await generator.close()

    async def _start_generator(self) -> Any:
        from laser_serve.generation import make_generator

        generator = make_generator(self.config.generator)
        await generator.start()
        return generator

    async def _generate(self, generator: Any, rows: list[Row], concurrency: int) -> None:
        from laser_serve.generation import Sampling

        s, slots = self.settings, asyncio.Semaphore(concurrency)

        async def one(row: Row) -> None:
            prompt, seed = self.prompt(row), s.row_seed(row)
            sampled = Sampling(s.n, s.temperature, s.top_p, row.max_new_tokens, seed)
            greedy = Sampling(1, 0.0, 1.0, row.max_new_tokens, seed)
            async with slots:
                t = time.perf_counter()
                cands, best = await asyncio.gather(
                    generator.generate(prompt, sampled, f"{row.key}-sampled"),
                    generator.generate(prompt, greedy, f"{row.key}-greedy"),
                )
                seconds = time.perf_counter() - t
            value = {
                "candidates": [_candidate(c) for c in cands],
                "greedy": _candidate(best[0]),
                "prompt_tokens": len(prompt.token_ids),
                "truncated": prompt.truncated,
                # Wall time while other rows shared the engine: a relative figure.
                "generate_seconds": seconds,
                # The sampled tokens depend on the CPU's fp32 kernels: where they came from.
                "cpu_flags": cpu_flags(),
            }
            self.cache.store("generate", row.task, row.key, self.stages(row)[0][1], value)

        await asyncio.gather(*(one(r) for r in rows))

    def _load_scorers(self) -> tuple[Any, list[Any]]:
        from laser_serve.pipeline import load_encoder
        from laser_serve.rewards import make_reward_model

        return load_encoder(self.config), [
            make_reward_model(pool_rm(rm)) for rm in self.settings.reward_models
        ]

    def _score(self, rows: list[Row], encoder: Any, rms: list[Any]) -> None:
        from laser_serve.pipeline import score_candidates
        from laser_serve.rewards import ScoreRequest

        for row in rows:
            (_, gkey), (_, ckey), *score_keys = self.stages(row)
            gen = self.load(row, "generate", gkey)
            if gen is None:
                continue
            prompt = self.prompt(row)
            if self.load(row, "context", ckey) is None:
                t = time.perf_counter()
                x = encoder.encode(prompt.token_ids, prompt.text, row.question)
                value = {"context": pack(x), "seconds": time.perf_counter() - t}
                self.cache.store("context", row.task, row.key, ckey, value)
            request = ScoreRequest(
                prompt.messages or [{"role": "user", "content": prompt.text}],
                [c["text"] for c in gen["candidates"]],
                row.question,
            )
            for rm, (stage, skey) in zip(rms, score_keys, strict=True):
                if self.load(row, stage, skey) is None:
                    scores, seconds = score_candidates([rm], request)
                    value = {
                        "scores": [float(v) for v in scores[rm.name]],
                        "seconds": seconds[rm.name],
                    }
                    self.cache.store(stage, row.task, row.key, skey, value)


def encoder_identity(config: Any) -> dict[str, Any]:
    ctx = config.context
    if ctx.encoder == "policy":
        return {"encoder": "policy", "model": config.generator.model}
    return {"encoder": "sentence", "model": ctx.model, "tail_tokens": ctx.tail_tokens}


def pack(x: np.ndarray) -> str:
    """A vector as base64 float32 (compact, exact for what the selector uses)."""
    return base64.b64encode(np.asarray(x, dtype="<f4").tobytes()).decode()


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Pools: what the methods replay, assembled from the cache or read from shipped files


@dataclass
class Pool:
    """One row's candidates with every RM's scores, ready to replay."""

    task: str
    key: str
    answers: tuple[str, ...]
    candidates: list[str]
    scores: dict[str, np.ndarray]  # RM name -> one score per candidate
    rm_seconds: dict[str, float]
    context: np.ndarray
    mean_logprob: np.ndarray
    greedy: str
    generate_seconds: float = 0.0
    all_classes: tuple[str, ...] = ()
    quality: np.ndarray = field(init=False)
    greedy_quality: float = field(init=False)

    def __post_init__(self) -> None:
        self.quality = np.array(
            [quality(self.task, c, self.answers, self.all_classes) for c in self.candidates]
        )
        self.greedy_quality = quality(self.task, self.greedy, self.answers, self.all_classes)


def _pool(row: Row, record: dict[str, Any], rm_names: Sequence[str]) -> Pool:
    gen = record["generate"]["value"]
    return Pool(
        task=row.task,
        key=row.key,
        answers=row.answers,
        all_classes=row.all_classes,
        candidates=[c["text"] for c in gen["candidates"]],
        scores={r: np.asarray(record["scores"][r]["value"]["scores"]) for r in rm_names},
        rm_seconds={r: float(record["scores"][r]["value"]["seconds"]) for r in rm_names},
        context=unpack(record["context"]["value"]["context"]),
        mean_logprob=np.array(
            [math.nan if c["logprob"] is None else c["logprob"] for c in gen["candidates"]]
        ),
        greedy=gen["greedy"]["text"],
        generate_seconds=float(gen["generate_seconds"]),
    )


def cached_records(
    rows: Sequence[Row], builder: Builder
) -> tuple[list[tuple[Row, dict[str, Any]]], int]:
    """Every row whose stages are all built, as (row, record), and how many are not."""
    found = [(row, builder.record(row)) for row in rows]
    out = [(row, rec) for row, rec in found if rec is not None]
    return out, len(rows) - len(out)


def pools_from_records(
    records: Sequence[tuple[Row, dict[str, Any]]], rm_names: Sequence[str]
) -> list[Pool]:
    return [_pool(row, record, rm_names) for row, record in records]


def pool_header(settings: Settings, command: str) -> dict[str, Any]:
    """Provenance of a shipped pool file."""
    import torch
    import transformers

    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = None
    return {
        "format": POOL_FORMAT,
        "version": POOL_VERSION,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        **settings.identity(),
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "gen_seed": settings.gen_seed,
        "encoder": settings.encoder,
        "reward_models": [{"name": rm.name, **rm_identity(rm)} for rm in settings.reward_models],
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "vllm": vllm_version,
        },
    }


def cpu_flags() -> list[str]:
    """The CPU features that change fp32 kernels (and so sampled tokens)."""
    from laser_serve.devices import cpu_flags as flags

    return sorted(f for f in flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))


def write_pools(
    path: Path, header: dict[str, Any], records: Sequence[tuple[Row, dict[str, Any]]]
) -> None:
    """Gzipped JSONL: the header, then one line per row holding its cache records."""

    lines = [json.dumps({**header, "rows": len(records)}, ensure_ascii=False)]
    for row, record in records:
        lines.append(
            json.dumps(
                {"row": asdict(row) | {"prompt": None}, **record},
                ensure_ascii=False,
                allow_nan=False,
            )
        )
    data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def read_pools(path: Path) -> tuple[dict[str, Any], list[tuple[Row, dict[str, Any]]]]:
    """A shipped pool file: (header, [(row without its prompt, record)])."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            if header.get("format") != POOL_FORMAT or header.get("version") != POOL_VERSION:
                raise BenchError(f"{path} is not a laser-serve pool file (version {POOL_VERSION})")
            out = []
            for line in f:
                item = json.loads(line)
                fields = item.pop("row")
                fields["prompt"] = fields["prompt"] or ""
                for name in ("answers", "all_classes"):
                    fields[name] = tuple(fields[name])
                out.append((Row(**fields), item))
    except (OSError, EOFError, json.JSONDecodeError, TypeError, KeyError) as exc:
        raise BenchError(f"cannot read pool file {path}: {exc}") from None
    return header, out


def read_pool_files(
    paths: Sequence[Path], keep: Any = None
) -> tuple[dict[str, Any], list[tuple[Row, dict[str, Any]]]]:
    """Several pool files as one: the first header and every row ``keep(row)`` accepts (all
    without ``keep``); BenchError when they hold other reward models."""
    header: dict[str, Any] | None = None
    records: list[tuple[Row, dict[str, Any]]] = []
    for path in paths:
        h, recs = read_pools(path)
        names = [rm["name"] for rm in h["reward_models"]]
        if header is not None and names != [rm["name"] for rm in header["reward_models"]]:
            raise BenchError(f"{path}: other reward models than {paths[0]}")
        header = header or h
        records += [(row, rec) for row, rec in recs if keep is None or keep(row)]
    if header is None:
        raise BenchError("no pool files")
    return header, records


def reward_table(paths: Sequence[Path]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Pool files as a full-information table: (header, contexts (N, d), R (N, K)) with
    R[i, k] the task score of the candidate the k-th RM of the header picks in row i."""
    from laser_serve.pipeline import choose_candidate

    header, records = read_pool_files(paths)
    names = [rm["name"] for rm in header["reward_models"]]
    pools = pools_from_records(records, names)
    if not pools:
        raise BenchError(f"{paths[0]}: no rows")
    X = np.stack([p.context for p in pools])
    R = np.array([[p.quality[choose_candidate(p.scores, (n,))[0]] for n in names] for p in pools])
    return header, X, R


def row_cpu_flags(header: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The CPU flags of the machine that generated a row's candidates: its own record, or,
    for rows generated before rows carried them, the flags of the pool it was shipped in."""
    value = record["generate"]["value"]
    return list(value["cpu_flags"] if "cpu_flags" in value else header["cpu_flags"])


def seed_cache(
    cache: Cache, header: dict[str, Any], records: Sequence[tuple[Row, dict[str, Any]]]
) -> int:
    """Write shipped records into the cache, so a build resumes from them; returns how many
    stage records were new. A row keeps where it was generated (`row_cpu_flags`), so a
    pool grown on another machine still says which rows its CPU can regenerate."""
    added = 0
    for row, record in records:
        generated = dict(record["generate"], value=dict(record["generate"]["value"]))
        generated["value"]["cpu_flags"] = row_cpu_flags(header, record)
        entries = [("generate", generated), ("context", record["context"])]
        entries += [(f"score-{name}", e) for name, e in record["scores"].items()]
        for stage, entry in entries:
            cached = cache.load(stage, row.task, row.key, entry["key"])
            if cached is None or (stage == "generate" and "cpu_flags" not in cached):
                cache.store(stage, row.task, row.key, entry["key"], entry["value"])
                added += 1
    return added
