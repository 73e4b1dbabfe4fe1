"""What the server learns, and how none of it is lost or poisoned.

The Learner owns the configured policy (the one that learns), the per-request override
policies, the pending selections waiting for feedback and the durability around them:

- every decision is journaled (flushed: it survives a killed process) before Rerank replies;
- every Feedback is checked first: its reward must keep the reward contract
  (``selector.reward_range`` when ``reward_norm`` is "none") and the update must keep the
  selector finite. A refused reward is INVALID_ARGUMENT and changes nothing, journal
  included. An accepted one is journaled and fsynced, then applied, before the reply;
- a snapshot of generation g (``selector-g.npz``, ``pending-g.log``, then ``learner.json``
  naming g, each written atomically) covers everything before it; new records then go to
  ``journal-g.log``. Older segments are kept ``server.journal_retention_days`` as the decision
  log, but only segments from g on are replayed;
- start-up loads the last snapshot and replays the segments after it, cutting a torn tail.
  A replayed feedback that breaks the contract or would make the state non-finite (a journal
  written by an older build, or by hand) is reported in the log and skipped, never applied.

Override policies (a request's ``policy`` other than the configured one) are ephemeral: they
learn from their own feedback while the process runs but are not saved. Nothing the server
learns is lost by that, because the configured policy learns from every single-arm feedback
whichever policy chose the arm (disjoint arms: each arm fits its own observations). What an
override holds (a round-robin cursor, an RNG, ε-greedy means) only steers the traffic that
asks for it, and saving it would let callers grow the state dir with one file per spec.

One threading.Lock guards the policies, the pending store and the journal together, so a
snapshot is always a consistent cut (its files are written after the lock is released).
Calls that fsync run off the event loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import secrets
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.config import Config, apply_warm_start, make_selector
from laser_serve.durable import atomic_write
from laser_serve.errors import ConfigError, InvalidArgument
from laser_serve.selector import Decision, Policy, RewardNormalizer, SelectorStateError
from laser_serve.server import journal
from laser_serve.server.journal import DecisionRecord, FeedbackRecord, Record
from laser_serve.server.metrics import Metrics

log = logging.getLogger(__name__)
LEARNING_SOURCES = ("application", "auto_nll")  # the sources that carry a reward


class NotFound(LookupError):
    pass


class AlreadyAnswered(LookupError):
    pass


class Unavailable(RuntimeError):
    """What Feedback needs (the shared log) cannot be reached: retry later; the message
    says why."""


class Learner:
    def __init__(self, config: Config, arms: tuple[str, ...], dim: int, metrics: Metrics):
        self.config = config
        self.arms = arms
        self.dim = dim
        self.metrics = metrics
        self.dir = config.state_dir()
        self.replica = config.server.replica_id or socket.gethostname()
        self.policy = self._make(config.selector.policy)
        self.overrides: dict[str, Policy] = {self.policy.name: self.policy}
        # Pending decisions as the frames they were journaled in: a snapshot writes them as
        # they are (100,000 pending in well under a second) and they take less memory than
        # the records; one is decoded when its feedback comes.
        self.pending: OrderedDict[str, bytes] = OrderedDict()
        self.answered: OrderedDict[str, float] = OrderedDict()  # id -> time, for ALREADY_EXISTS
        self.nll_norm = RewardNormalizer("quantile", window=config.selector.window)
        self.generation = 0
        self.skipped = 0  # replayed feedback refused (reported in the log)
        self._journal: journal.JournalWriter | None = None
        self._dirty = False  # records since the last snapshot
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()

    def _make(self, spec: str) -> Policy:
        return make_selector(self.config.selector, self.arms, self.dim, spec)

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
        fresh = not (self.dir / "learner.json").exists() and not self._segments()
        replayed = self._load(repair=True)
        if self.config.selector.warm_start:
            self._warm_start(fresh)
        # A segment newer than the snapshot (a crash between starting it and committing the
        # snapshot) was just replayed: the next generation must come after it, never reuse it.
        self.generation = max([self.generation, *map(journal.generation_of, self._segments())])
        self.snapshot()  # also opens the journal of the new generation
        self.expire(time.time())
        log.info(
            "selector state: generation %d, %d journal records replayed (%d skipped), %d pending",
            self.generation,
            replayed,
            self.skipped,
            len(self.pending),
        )
        self._publish()

    def _warm_start(self, fresh: bool) -> None:
        """Apply selector.warm_start to a fresh state dir only. A restart finds the prior in
        its own snapshot (written right after this), so applying it again would count it
        twice; refusing would keep a server whose config names a prior from restarting."""
        where = self.config.selector.warm_start
        if not fresh:
            log.warning(
                "selector.warm_start %s ignored: %s already holds selector state (a warm "
                "start applies to a fresh state dir only)",
                where,
                self.dir,
            )
            return
        log.info(
            "selector warm-started from %s", apply_warm_start(self.config.selector, self.policy)
        )

    def load_readonly(self) -> int:
        """Load the snapshot and replay the journal after it in memory, changing no file
        (``laser-serve --inspect``, also next to a running server); returns records read."""
        return self._load(repair=False)

    def _load(self, repair: bool) -> int:
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
        for path in self._segments():
            if journal.generation_of(path) < self.generation:
                continue
            if repair:
                records = journal.repair(path, self.arms)
            else:
                records, _, problem = journal.read(path, self.arms)
                if problem:
                    log.warning("journal %s: %s (not changed)", path, problem)
            for i, record in enumerate(records):
                self._replay(record, f"{path.name} record {i}")
                replayed += 1
        return replayed

    def _segments(self) -> list[Path]:
        return journal.segments(self.dir)

    def _load_meta(self, meta: dict[str, Any]) -> None:
        if "pending" in meta:  # a v1 snapshot: pending selections as JSON
            for s in meta["pending"]:
                record = journal.from_v1(s, self.arms)
                self.pending[record.id] = journal.encode(record)
        else:
            path = self.dir / f"pending-{self.generation}.log"
            data = path.read_bytes()
            framed, _, problem = journal.read_frames(data)
            if problem or not data.startswith(journal.MAGIC):  # written atomically: damage
                raise SelectorStateError(f"corrupt learner snapshot {path}: {problem}")
            for record, frame in framed:
                self.pending[record.id] = frame
        self.answered = OrderedDict((k, v) for k, v in meta["answered"])
        self.nll_norm.load_state_dict(meta["nll_norm"])

    def snapshot(self, force: bool = True) -> None:
        """Write a snapshot; ``force=False`` skips it when nothing was journaled since the
        last one (so an idle server does not start a journal segment a minute).

        The cut (new journal segment, copies of the state) is taken under the lock; the files
        are written outside it, so Rerank and Feedback do not wait for a snapshot's I/O. A
        crash before ``learner.json`` names the new generation replays both segments."""
        with self._snapshot_lock:  # one snapshot at a time
            with self._lock:
                if not force and not self._dirty:
                    return
                nxt = self.generation + 1
                old_journal = self._journal
                self._journal = journal.JournalWriter(self.dir / f"journal-{nxt}.log")
                if old_journal:
                    old_journal.close()
                selector = self.policy.state_dict()
                pending = list(self.pending.values())  # immutable frames: a cheap cut
                meta = {
                    "version": 2,
                    "generation": nxt,
                    "answered": list(self.answered.items()),
                    "nll_norm": self.nll_norm.state_dict(),
                }
                self._dirty = False
            self.policy.save(self.dir / f"selector-{nxt}.npz", selector)
            atomic_write(
                self.dir / f"pending-{nxt}.log", lambda f: journal.write_frames(f, pending)
            )
            atomic_write(self.dir / "learner.json", json.dumps(meta).encode())
            with self._lock:
                self.generation = nxt
            self._remove_old(nxt)

    def _remove_old(self, generation: int) -> None:
        """Files the snapshot ``generation`` covers; journal segments after the retention."""
        for pattern in ("selector-*.npz", "pending-*.log"):
            for path in self.dir.glob(pattern):
                if journal.generation_of(path) < generation:
                    path.unlink()
        keep_s = self.config.server.journal_retention_days * 86400
        for path in self._segments():
            old = time.time() - path.stat().st_mtime >= keep_s
            if journal.generation_of(path) < generation and old:
                path.unlink()

    def close(self) -> None:
        self.snapshot()
        with self._lock:
            if self._journal:
                self._journal.close()
                self._journal = None

    # --- decisions and feedback -----------------------------------------------------------

    def record(
        self,
        policy: Policy,
        decision: Decision,
        x: np.ndarray,
        n: int,
        chosen_index: int,
        expect_feedback: bool,
        nll_reward: float | None,
    ) -> str:
        """Journal a decision (flushed) under a fresh 128-bit id and keep it pending."""
        rec = self._decision_record(
            policy, decision, x, n, chosen_index, expect_feedback, nll_reward
        )
        auto_now = self.config.server.auto_feedback == "nll" and not expect_feedback
        frame = journal.encode(rec)
        with self._lock:
            self._append(frame, sync=False)
            self.pending[rec.id] = frame
            if auto_now and rec.nll_reward is not None and len(rec.chosen) == 1:
                self._auto_nll_locked(rec)
        self._publish()
        return rec.id

    def _decision_record(
        self,
        policy: Policy,
        decision: Decision,
        x: np.ndarray,
        n: int,
        chosen_index: int,
        expect_feedback: bool,
        nll_reward: float | None,
    ) -> DecisionRecord:
        """A decision under a fresh 128-bit id."""
        return DecisionRecord(
            id=secrets.token_hex(16),
            time=time.time(),
            replica=self.replica,
            policy=policy.name,
            params=policy.params(),
            eligible=self.arms,
            x=np.asarray(x, dtype=np.float32),
            probs=np.asarray(decision.probs, dtype=np.float32),
            chosen=tuple(decision.arms),
            propensity=float(decision.propensity),
            n=n,
            chosen_index=chosen_index,
            expect_feedback=expect_feedback,
            nll_reward=nll_reward if nll_reward is not None and math.isfinite(nll_reward) else None,
        )

    def feedback(self, selection_id: str, reward: float, token: str = "") -> tuple[str, float]:
        """Apply application feedback once; returns (credited RM, normalized reward).
        InvalidArgument (nothing changed) for a reward that is refused."""
        with self._lock:
            result = self._close_locked(selection_id, "application", reward, token)
        self._publish()
        return result

    def _close_locked(
        self, selection_id: str, source: str, reward: float, token: str
    ) -> tuple[str, float]:
        if selection_id in self.answered:
            raise AlreadyAnswered(selection_id)
        dec = self.decision(selection_id)
        if dec is None:
            raise NotFound(selection_id)
        try:
            normalized = self._learned(dec, source, reward)
        except InvalidArgument:
            self.metrics.feedback.labels(_credited(dec), "rejected").inc()
            raise
        now = time.time()
        record = FeedbackRecord(
            selection_id, now, source, reward, normalized, now - dec.time, token
        )
        self._append(record, sync=True)  # acknowledged feedback is on disk first
        return self._apply_feedback(dec, record)

    def _auto_nll_locked(self, dec: DecisionRecord) -> bool:
        assert dec.nll_reward is not None
        try:
            self._close_locked(dec.id, "auto_nll", dec.nll_reward, "")
        except InvalidArgument as exc:
            log.warning("auto_nll reward for %s refused: %s", dec.id, exc)
            return False
        return True

    def _learned(self, dec: DecisionRecord, source: str, reward: float | None) -> float | None:
        """The reward the learning policy would learn from for this feedback (None: no
        single arm learns), after checking the reward contract and that the update keeps
        the selector finite; InvalidArgument("reward", why) otherwise. Changes nothing."""
        if reward is None or not math.isfinite(reward):
            raise InvalidArgument("reward", f"must be finite, got {reward}")
        lo, hi = self.config.selector.reward_range
        if source == "application" and self.policy.normalizer.mode == "none":
            if not lo <= reward <= hi:
                raise InvalidArgument(
                    "reward",
                    f"{reward!r} is outside selector.reward_range [{lo:g}, {hi:g}]; send "
                    "rewards in that range, or set selector.reward_norm to quantile or "
                    "minmax to accept any finite reward",
                )
        if len(dec.chosen) != 1:
            return None
        r = self.nll_norm.peek(reward) if source == "auto_nll" else reward
        try:
            return self.policy.check_update(dec.chosen_names[0], dec.x, r)
        except ValueError as exc:
            raise InvalidArgument("reward", str(exc)) from None

    def expire(self, now: float) -> int:
        """Close selections past their TTL (with their nll reward when configured)."""
        ttl = self.config.server.pending_ttl_s
        expired = 0
        with self._lock:
            while self.pending:
                dec = journal.decode_frame(next(iter(self.pending.values())))
                assert isinstance(dec, DecisionRecord)
                if now - dec.time < ttl and len(self.pending) <= self.config.server.max_pending:
                    break
                expired += 1
                if (
                    self.config.server.auto_feedback == "nll"
                    and dec.nll_reward is not None
                    and len(dec.chosen) == 1
                    and self._auto_nll_locked(dec)
                ):
                    continue
                record = FeedbackRecord(dec.id, now, "expired", None, None, now - dec.time, "")
                self._append(record, sync=False)
                self._apply_feedback(dec, record)
            while self.answered and (
                now - next(iter(self.answered.values())) > ttl
                or len(self.answered) > self.config.server.max_pending
            ):
                self.answered.popitem(last=False)
        if expired:
            self._publish()
        return expired

    # --- the one place where records change state (live, on replay, in a rebuild) ---------

    def decision(self, selection_id: str) -> DecisionRecord | None:
        """The pending decision ``selection_id``, or None."""
        frame = self.pending.get(selection_id)
        if frame is None:
            return None
        record = journal.decode_frame(frame)
        assert isinstance(record, DecisionRecord)
        return record

    def _append(self, record: Record | bytes, sync: bool) -> None:
        assert self._journal is not None, "learner is not open"
        self._journal.append(record, sync)
        self._dirty = True

    def _replay(self, record: Record, where: str) -> None:
        if isinstance(record, DecisionRecord):
            self.pending[record.id] = journal.encode(record)
            return
        dec = self.decision(record.id)
        if dec is None:  # cannot happen in a journal this build wrote
            log.warning("journal %s: feedback for unknown selection %s; skipped", where, record.id)
            self.skipped += 1
            return
        self._apply_feedback(dec, record, where)

    def _apply_feedback(
        self, dec: DecisionRecord, record: FeedbackRecord, replayed_from: str = ""
    ) -> tuple[str, float]:
        """Close ``dec`` with ``record``. Live feedback was checked before it was journaled;
        replayed feedback (``replayed_from`` says where) is checked here, and one that is
        refused is reported and skipped (its selection still counts as answered)."""
        self.pending.pop(dec.id, None)
        if record.source not in LEARNING_SOURCES:
            return "", math.nan
        assert record.reward is not None
        self.answered[dec.id] = record.time if math.isfinite(record.time) else time.time()
        credited = _credited(dec)
        if replayed_from:
            try:
                self._learned(dec, record.source, record.reward)
            except InvalidArgument as exc:
                log.warning(
                    "journal %s: %s feedback for %s (token %r) skipped: %s",
                    replayed_from,
                    record.source,
                    dec.id,
                    record.token,
                    exc,
                )
                self.skipped += 1
                return credited, math.nan
        normalized = math.nan
        if len(dec.chosen) == 1:
            reward = self.nll_norm(record.reward) if record.source == "auto_nll" else record.reward
            normalized = self._learn(dec, credited, reward)
        if not replayed_from:
            outcome = "applied" if record.source == "application" else "auto_nll"
            self.metrics.feedback.labels(credited, outcome).inc()
            self.metrics.feedback_reward.labels(credited).observe(record.reward)
        return credited, normalized

    def _learn(
        self,
        dec: DecisionRecord,
        credited: str,
        reward: float,
        normalized: float | None = None,
        at: float | None = None,
    ) -> float:
        """Update the learning policy (``Policy.update``: ``normalized``, ``at``; ValueError
        when refused) and, when an override chose the arm, that override too."""
        result = self.policy.update(credited, dec.x, reward, normalized=normalized, at=at)
        chooser = self.overrides.get(dec.policy)
        if chooser is not None and chooser is not self.policy:
            try:
                chooser.update(credited, dec.x, reward)
            except ValueError as exc:  # an ephemeral override: its loss is its own
                log.warning("override policy %s refused a reward: %s", dec.policy, exc)
        return result

    def import_record(self, record: Record, keep: bool = True) -> str:
        """Journal and apply a record read from another state dir (``laser-serve
        --rebuild``). Feedback that ``keep`` rejects, or that is refused, is journaled as
        source "dropped": its selection ends without a reward. Returns what happened:
        decision, applied, dropped, ended (expired, dropped before) or orphan (its decision
        is not in the journal, e.g. removed by the retention)."""
        with self._lock:
            if isinstance(record, DecisionRecord):
                if record.eligible != self.arms or record.x.size != self.dim:
                    raise ConfigError(
                        f"decision {record.id} was made over arms {list(record.eligible)} "
                        f"with a {record.x.size}-dim context; this configuration has "
                        f"{list(self.arms)} and {self.dim}"
                    )
                frame = journal.encode(record)
                self._append(frame, sync=False)
                self.pending[record.id] = frame
                if record.policy == self.policy.name:
                    self.policy.count_selection(record.chosen)
                return "decision"
            dec = self.decision(record.id)
            if dec is None:
                return "orphan"
            outcome = "applied" if record.source in LEARNING_SOURCES else "ended"
            normalized = None
            if outcome == "applied" and keep:
                try:
                    normalized = self._learned(dec, record.source, record.reward)
                except InvalidArgument as exc:
                    log.warning("rebuild: feedback for %s refused: %s", dec.id, exc)
                    keep = False
            if outcome == "applied" and not keep:
                outcome = "dropped"
                record = dataclasses.replace(record, source="dropped")
            record = dataclasses.replace(record, normalized=normalized)
            self._append(record, sync=False)
            self._apply_feedback(dec, record)
            return outcome

    def _publish(self) -> None:
        self.metrics.pending.set(len(self.pending))
        for stat in self.policy.stats():
            self.metrics.selector_pulls.labels(stat.name).set(stat.pulls)


def _credited(dec: DecisionRecord) -> str:
    names = dec.chosen_names
    return names[0] if len(names) == 1 else "ensemble"
