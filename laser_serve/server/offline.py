"""Operator tools on a state dir, without a server: ``laser-serve --inspect`` and ``--rebuild``.

Both read the configuration the server runs with (its reward models and selector settings).
``inspect`` changes no file, so it also works next to a running server. ``rebuild`` replays
the journal of one state dir into a fresh selector in a new one, dropping the feedback a
filter names (a token, a time window, rewards outside a range): the way back from feedback
that taught the selector something wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from laser_serve.config import Config
from laser_serve.durable import lock_dir
from laser_serve.errors import ConfigError
from laser_serve.selector.state import read_state
from laser_serve.server import journal
from laser_serve.server.journal import DecisionRecord, FeedbackRecord
from laser_serve.server.learning import LEARNING_SOURCES, Learner
from laser_serve.server.metrics import Metrics


@dataclass(frozen=True)
class FeedbackFilter:
    """Which feedback a rebuild keeps: not from ``drop_tokens``, not received within
    ``drop_window`` [start, end) (unix seconds), raw reward inside ``reward_range``."""

    drop_tokens: frozenset[str] = frozenset()
    drop_window: tuple[float, float] | None = None
    reward_range: tuple[float, float] | None = None

    def keep(self, record: FeedbackRecord) -> bool:
        if record.source not in LEARNING_SOURCES:
            return True
        if record.token in self.drop_tokens:
            return False
        if self.drop_window and self.drop_window[0] <= record.time < self.drop_window[1]:
            return False
        if self.reward_range and record.reward is not None:
            lo, hi = self.reward_range
            return lo <= record.reward <= hi
        return True


def state_dim(folder: Path, arms: tuple[str, ...]) -> int:
    """The context dimension a state dir was written with (its snapshot, else its journal)."""
    meta = folder / "learner.json"
    if meta.exists():
        generation = json.loads(meta.read_text())["generation"]
        header, _ = read_state(folder / f"selector-{generation}.npz")
        return int(header["config"]["dim"])
    for _, record in journal.read_all(folder, arms):
        if isinstance(record, DecisionRecord):
            return int(record.x.size)
    raise ConfigError(f"{folder} holds no selector state and no journal")


def _when(t: float) -> str:
    if not math.isfinite(t):
        return "-"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class JournalSummary:
    segments: int = 0
    decisions: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    first: float = math.inf
    last: float = -math.inf
    # per token name: [count, min reward, max reward] of application feedback
    tokens: dict[str, list[float]] = field(default_factory=dict)
    outside: int = 0  # application rewards outside selector.reward_range

    def add(self, record: journal.Record, reward_range: tuple[float, float]) -> None:
        if math.isfinite(record.time):
            self.first, self.last = min(self.first, record.time), max(self.last, record.time)
        if isinstance(record, DecisionRecord):
            self.decisions += 1
            return
        self.sources[record.source] += 1
        if record.source != "application" or record.reward is None:
            return
        r = record.reward
        row = self.tokens.setdefault(record.token, [0, math.inf, -math.inf])
        row[0], row[1], row[2] = row[0] + 1, min(row[1], r), max(row[2], r)
        self.outside += not reward_range[0] <= r <= reward_range[1]


def inspect(config: Config) -> str:
    """Per-arm statistics (snapshot plus the journal after it) and what the journal holds."""
    folder, arms = config.state_dir(), config.arms
    if not folder.is_dir():
        raise ConfigError(f"state dir {folder} does not exist")
    learner = Learner(config, arms, state_dim(folder, arms), Metrics())
    learner.load_readonly()
    lo, hi = config.selector.reward_range
    summary = JournalSummary(segments=len(journal.segments(folder)))
    for _, record in journal.read_all(folder, arms):
        summary.add(record, (lo, hi))
    p = learner.policy
    lines = [
        f"state dir {folder}: generation {learner.generation}, policy {p.name}, "
        f"{len(arms)} arms, context dim {p.dim}, {len(learner.pending)} pending selections",
        "",
        "| arm | pulls | selections | mean reward | mean normalized | last update |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in p.stats():
        lines.append(
            f"| {s.name} | {s.pulls} | {s.selections} | {s.mean_reward:.6g} | "
            f"{s.mean_normalized_reward:.6g} | {_when(s.last_update) if s.pulls else '-'} |"
        )
    sources = ", ".join(f"{k} {v}" for k, v in sorted(summary.sources.items())) or "none"
    lines += [
        "",
        f"journal: {summary.segments} segments, {_when(summary.first)} to "
        f"{_when(summary.last)}; {summary.decisions} decisions; feedback: {sources}",
        f"application rewards outside selector.reward_range [{lo:g}, {hi:g}]: {summary.outside}"
        + (f"; replaying the journal tail skipped {learner.skipped}" if learner.skipped else ""),
        "",
        "| token | feedback | min reward | max reward |",
        "|---|---:|---:|---:|",
    ]
    for token, (n, rmin, rmax) in sorted(summary.tokens.items()):
        lines.append(f"| {token or '(none)'} | {int(n)} | {rmin:.6g} | {rmax:.6g} |")
    return "\n".join(lines)


def rebuild(config: Config, target: Path, keep: FeedbackFilter) -> dict[str, Any]:
    """Replay every journal segment of ``config.state_dir()`` into a fresh selector in
    ``target`` (a new or empty folder), journaling there what it keeps, so that ``target``
    is a state dir a server can start on. Returns counts by outcome."""
    source, arms = config.state_dir(), config.arms
    if target.resolve() == source.resolve():
        raise ConfigError("--rebuild needs a new folder, not the state dir itself")
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"--rebuild target {target} is not empty")
    dim = state_dim(source, arms)
    rebuilt = dataclasses.replace(
        config, server=dataclasses.replace(config.server, state_dir=str(target))
    )
    fd = lock_dir(target)
    try:
        learner = Learner(rebuilt, arms, dim, Metrics())
        learner.open()
        counts: Counter[str] = Counter()
        for _, record in journal.read_all(source, arms):
            ok = keep.keep(record) if isinstance(record, FeedbackRecord) else True
            counts[learner.import_record(record, ok)] += 1
        learner.close()
    finally:
        os.close(fd)
    return {"target": str(target), "dim": dim, "at": time.time(), **counts}


def parse_time(text: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it carries an offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is neither unix seconds nor an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def parse_pair(text: str, what: str, convert: Any = float) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ConfigError(f"{what} must be two values separated by a comma, got {text!r}")
    try:
        lo, hi = convert(parts[0].strip()), convert(parts[1].strip())
    except ValueError:
        raise ConfigError(f"{what}: cannot read {text!r}") from None
    if not lo <= hi:
        raise ConfigError(f"{what}: the first value must not be after the second, got {text!r}")
    return lo, hi
