"""What the server learns, and how none of it is lost.

The Learner owns the configured policy (the one that learns), the per-request override
policies, the pending selections waiting for feedback and the durability around them:

- every selection is journaled (flushed, survives a killed process) before Rerank replies;
- every Feedback is journaled and fsynced before the selector is updated and the reply sent;
- a snapshot (selector state + learner state, generation g) is written atomically; the
  journal then continues in generation g, and older journals are deleted only after the
  snapshot that covers them is on disk;
- start-up loads the last snapshot and replays the journals after it, cutting a torn tail.

One threading.Lock guards the policies, the pending store and the journal together, so a
snapshot is always a consistent cut. Calls that fsync run off the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.config import Config
from laser_serve.durable import atomic_write
from laser_serve.errors import ConfigError
from laser_serve.selector import Policy, RewardNormalizer, SelectorStateError, make_policy
from laser_serve.server import journal
from laser_serve.server.metrics import Metrics

log = logging.getLogger(__name__)


class NotFound(LookupError):
    pass


class AlreadyAnswered(LookupError):
    pass


@dataclass
class Selection:
    id: str
    arms: list[int]
    policy: str
    x: list[float]
    created: float
    expect_feedback: bool
    nll_reward: float | None  # mean log-prob of the chosen candidate, for auto_feedback


class Learner:
    def __init__(self, config: Config, arms: tuple[str, ...], dim: int, metrics: Metrics):
        self.config = config
        self.arms = arms
        self.dim = dim
        self.metrics = metrics
        self.dir = config.state_dir()
        self.policy = self._make(config.selector.policy)
        self.overrides: dict[str, Policy] = {self.policy.name: self.policy}
        self.pending: OrderedDict[str, Selection] = OrderedDict()
        self.answered: OrderedDict[str, float] = OrderedDict()  # id -> time, for ALREADY_EXISTS
        self.nll_norm = RewardNormalizer("quantile", window=config.selector.window)
        self.generation = 0
        self._journal: journal.JournalWriter | None = None
        self._lock = threading.Lock()

    def _make(self, spec: str) -> Policy:
        s = self.config.selector
        return make_policy(
            spec,
            self.arms,
            self.dim,
            seed=s.seed,
            alpha=s.alpha,
            lam=s.lam,
            normalize=s.normalize,
            project_to=s.project_to or None,
            reward_norm=s.reward_norm,
            window=s.window,
        )

    # --- policies -------------------------------------------------------------------------

    def policy_for(self, spec: str) -> Policy:
        """The configured policy for "", else a per-server instance of the override."""
        if not spec or spec == self.policy.name:
            return self.policy
        with self._lock:
            if spec not in self.overrides:
                self.overrides[spec] = self._make(spec)  # ValueError names a bad spec
            return self.overrides[spec]

    # --- start-up and snapshots -----------------------------------------------------------

    def open(self) -> None:
        """Load the last snapshot, replay the journals after it, start a new journal."""
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "learner.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                self.generation = int(meta["generation"])
            except (ValueError, KeyError) as exc:
                raise SelectorStateError(f"corrupt learner snapshot {meta_path}: {exc}") from None
            try:
                self.policy.load(self.dir / f"selector-{self.generation}.npz")
            except SelectorStateError as exc:
                raise ConfigError(
                    f"saved selector state in {self.dir} does not match this configuration: "
                    f"{exc}. Point server.state_dir elsewhere to start fresh, or restore the "
                    "configuration it was saved with."
                ) from None
            self._load_meta(meta)
        replayed = 0
        for path in sorted(self.dir.glob("journal-*.log"), key=_generation_of):
            if _generation_of(path) < self.generation:
                continue
            for record in journal.repair(path):
                self._apply(record, replaying=True)
                replayed += 1
        self._snapshot_locked()  # also opens the journal of the new generation
        self.expire(time.time())
        log.info(
            "selector state: generation %d, %d journal records replayed, %d pending",
            self.generation,
            replayed,
            len(self.pending),
        )
        self._publish()

    def snapshot(self) -> None:
        with self._lock:
            self._snapshot_locked()

    def _snapshot_locked(self) -> None:
        nxt = self.generation + 1
        old_journal = self._journal
        self._journal = journal.JournalWriter(self.dir / f"journal-{nxt}.log")
        if old_journal:
            old_journal.close()
        self.policy.save(self.dir / f"selector-{nxt}.npz")
        meta = {
            "generation": nxt,
            "pending": [asdict(s) for s in self.pending.values()],
            "answered": list(self.answered.items()),
            "nll_norm": self.nll_norm.state_dict(),
        }
        atomic_write(self.dir / "learner.json", json.dumps(meta).encode())
        self.generation = nxt
        for path in self.dir.glob("selector-*.npz"):
            if _generation_of(path) < nxt:
                path.unlink()
        for path in self.dir.glob("journal-*.log"):
            if _generation_of(path) < nxt:
                path.unlink()

    def _load_meta(self, meta: dict[str, Any]) -> None:
        for s in meta["pending"]:
            self.pending[s["id"]] = Selection(**s)
        self.answered = OrderedDict((k, v) for k, v in meta["answered"])
        self.nll_norm.load_state_dict(meta["nll_norm"])

    def close(self) -> None:
        with self._lock:
            self._snapshot_locked()
            if self._journal:
                self._journal.close()
                self._journal = None

    # --- selections and feedback ----------------------------------------------------------

    def record(
        self,
        arms: tuple[int, ...],
        policy: str,
        x: np.ndarray,
        expect_feedback: bool,
        nll_reward: float | None,
    ) -> str:
        """Store a selection under a fresh 128-bit id; journaled (flushed) before return."""
        sel = Selection(
            id=secrets.token_hex(16),
            arms=list(arms),
            policy=policy,
            x=[float(v) for v in x],
            created=time.time(),
            expect_feedback=expect_feedback,
            nll_reward=nll_reward if nll_reward is not None and math.isfinite(nll_reward) else None,
        )
        auto_now = self.config.server.auto_feedback == "nll" and not expect_feedback
        with self._lock:
            self._append({"type": "selection", **asdict(sel)}, sync=False)
            self._apply({"type": "selection", **asdict(sel)})
            if auto_now and sel.nll_reward is not None and len(sel.arms) == 1:
                self._feedback_locked(sel.id, sel.nll_reward, source="nll")
        self._publish()
        return sel.id

    def feedback(self, selection_id: str, reward: float) -> tuple[str, float]:
        """Apply application feedback once; returns (credited RM, normalized reward)."""
        with self._lock:
            result = self._feedback_locked(selection_id, reward, source="app")
        self._publish()
        return result

    def _feedback_locked(self, selection_id: str, reward: float, source: str) -> tuple[str, float]:
        if selection_id in self.answered:
            raise AlreadyAnswered(selection_id)
        sel = self.pending.get(selection_id)
        if sel is None:
            raise NotFound(selection_id)
        record = {
            "type": "feedback",
            "id": selection_id,
            "reward": reward,
            "source": source,
            "arms": sel.arms,
            "policy": sel.policy,
            "x": sel.x,
            "time": time.time(),
        }
        self._append(record, sync=True)  # acknowledged feedback is on disk first
        return self._apply(record)

    def expire(self, now: float) -> int:
        """Drop selections past their TTL (after an nll reward when configured)."""
        ttl = self.config.server.pending_ttl_s
        expired = 0
        with self._lock:
            while self.pending:
                sel = next(iter(self.pending.values()))
                if now - sel.created < ttl and len(self.pending) <= self.config.server.max_pending:
                    break
                if (
                    self.config.server.auto_feedback == "nll"
                    and sel.nll_reward is not None
                    and len(sel.arms) == 1
                ):
                    self._feedback_locked(sel.id, sel.nll_reward, source="nll")
                else:
                    self._append({"type": "expire", "id": sel.id}, sync=False)
                    self._apply({"type": "expire", "id": sel.id})
                expired += 1
            while self.answered and (
                now - next(iter(self.answered.values())) > ttl
                or len(self.answered) > self.config.server.max_pending
            ):
                self.answered.popitem(last=False)
        if expired:
            self._publish()
        return expired

    # --- the one place where records change state (live and on replay) ---------------------

    def _append(self, record: dict[str, Any], sync: bool) -> None:
        assert self._journal is not None, "learner is not open"
        self._journal.append(record, sync)

    def _apply(self, record: dict[str, Any], replaying: bool = False) -> tuple[str, float]:
        kind = record["type"]
        if kind == "selection":
            fields = {k: v for k, v in record.items() if k != "type"}
            self.pending[record["id"]] = Selection(**fields)
            return "", 0.0
        if kind == "expire":
            self.pending.pop(record["id"], None)
            return "", 0.0
        # feedback
        sel_id = record["id"]
        self.pending.pop(sel_id, None)
        self.answered[sel_id] = record["time"]
        x = np.asarray(record["x"], dtype=np.float64)
        reward = record["reward"]
        if record["source"] == "nll":
            reward = self.nll_norm(reward)
        names = [self.arms[a] for a in record["arms"]]
        credited = names[0] if len(names) == 1 else "ensemble"
        normalized = float("nan")
        if len(names) == 1:
            # Any single-arm observation is valid data for the learning policy, whichever
            # policy chose the arm (disjoint arms: each arm fits its own rewards).
            normalized = self.policy.update(names[0], x, reward)
            chooser = self.overrides.get(record["policy"])
            if chooser is not None and chooser is not self.policy:
                chooser.update(names[0], x, reward)
        if not replaying:
            outcome = "applied" if record["source"] == "app" else "auto_nll"
            self.metrics.feedback.labels(credited, outcome).inc()
            self.metrics.feedback_reward.labels(credited).observe(record["reward"])
        return credited, normalized

    def _publish(self) -> None:
        self.metrics.pending.set(len(self.pending))
        for stat in self.policy.stats():
            self.metrics.selector_pulls.labels(stat.name).set(stat.pulls)


def _generation_of(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])
