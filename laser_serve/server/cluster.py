"""Replicas that learn as one: shared selections and one shared update log in Redis.

With ``cluster.redis_url`` set, the :class:`ClusterLearner` replaces the journaled Learner's
durability (its policies, checks and override handling are the Learner's own):

- Rerank still selects from this replica's in-memory state: nothing is asked of Redis before
  the choice. Afterwards the decision (its journal frame: arms, float32 context, policy) is
  written to Redis with the pending TTL, so Feedback can arrive at any replica. If Redis is
  down the reply still goes out; that selection's Feedback will be NOT_FOUND.
- Feedback checks the reward against this replica's state (the reward contract, a finite
  update) and normalizes it, then one Lua script claims the selection: it must exist (else
  NOT_FOUND), its id is claimed with SET NX (else ALREADY_EXISTS), and the event (the
  decision frame and a FeedbackRecord carrying the normalized reward, numbered by a
  counter) is XADDed to one stream. OK is returned only once Redis has answered the script;
  with ``appendonly yes`` and ``appendfsync always`` that answer means it is on Redis's
  disk. Any Redis error is UNAVAILABLE: the client retries, and a retry of an event that
  did land is ALREADY_EXISTS, never a second count.
- Every replica reads the whole stream in order (XREAD from its own watermark, not a
  consumer group: every replica needs every event) and applies each event with the stored
  normalized reward and the event's time, so replicas that applied the same prefix hold
  bit-identical learned state (everything but their own selection counts and RNG).
- Snapshots carry the watermark (event number and stream id). One replica at a time writes
  the shared one, under a lock with a lease, and only if it is newer than the newest kept;
  the stream is trimmed below the oldest snapshot kept. Every replica also keeps its own in
  ``state_dir`` (written atomically), so it can start while Redis is down. A replica loads
  the newest snapshot at start-up and replays from its watermark; a gap in the event numbers
  (the events it missed were trimmed) makes it load the newest shared snapshot again.
- While Redis is down the reader retries; when it returns, replicas catch up by themselves.
  ``laser.v1.Cluster`` health, ``laser_cluster_redis_up``, ``laser_cluster_redis_errors_total``
  and ``laser_cluster_stream_lag_events`` show the outage.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from laser_serve.config import ClusterConfig, Config
from laser_serve.durable import atomic_write
from laser_serve.errors import ConfigError, InvalidArgument
from laser_serve.selector import Decision, Policy, SelectorStateError
from laser_serve.server import journal
from laser_serve.server.journal import DecisionRecord, FeedbackRecord
from laser_serve.server.learning import (
    AlreadyAnswered,
    Learner,
    NotFound,
    Unavailable,
    _credited,
)
from laser_serve.server.metrics import Metrics

try:  # the cluster extra; the single-process default needs neither
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from threadpoolctl import threadpool_limits
except ModuleNotFoundError:
    redis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
CLUSTER_HEALTH = "laser.v1.Cluster"  # SERVING while this replica reaches Redis
READ_COUNT = 512  # events per XREAD
READ_BLOCK_MS = 500
LOCAL_SNAPSHOT = "cluster-state.bin"

# KEYS: selection, claim, stream, counter. ARGV: feedback frame, claim TTL (ms).
# Returns {0} unknown selection, {1} already claimed, {2, stream id, event number}.
_CLAIM = """
local decision = redis.call('GET', KEYS[1])
if not decision then return {0} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1} end
local seq = redis.call('INCR', KEYS[4])
local id = redis.call('XADD', KEYS[3], '*', 's', seq, 'd', decision, 'f', ARGV[1])
return {2, id, seq}
"""

# KEYS: lock, snapshot index (zset: event number -> "seq/stream id"), stream.
# ARGV: lock token, event number, stream id, snapshot bytes, snapshots kept, key prefix.
# Writes only while the caller still holds the lock and only a newer snapshot; drops the
# oldest beyond the kept count and trims the stream below the oldest kept.
_SNAPSHOT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= tonumber(ARGV[2]) then return 0 end
local member = ARGV[2] .. '/' .. ARGV[3]
redis.call('SET', ARGV[6] .. ':snap:' .. member, ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], member)
local keep = tonumber(ARGV[5])
for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, -(keep + 1))) do
  redis.call('DEL', ARGV[6] .. ':snap:' .. old)
  redis.call('ZREM', KEYS[2], old)
end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
redis.call('XTRIM', KEYS[3], 'MINID', string.match(oldest, '/(.*)$'))
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Event:
    """One entry of the update stream."""

    id: str  # stream id, "<ms>-<n>" (Redis's clock at the append)
    seq: int  # event number: 1, 2, ... with no gaps
    decision: DecisionRecord
    feedback: FeedbackRecord


@dataclass(frozen=True)
class Watermark:
    """Where a state stands in the stream: the last event applied (0, "0-0": none)."""

    seq: int = 0
    id: str = "0-0"


def pack_snapshot(mark: Watermark, state: bytes) -> bytes:
    """A snapshot: one JSON line with its watermark, then the selector state file's bytes."""
    return json.dumps({"seq": mark.seq, "id": mark.id}).encode() + b"\n" + state


def unpack_snapshot(data: bytes) -> tuple[Watermark, bytes]:
    head, _, state = data.partition(b"\n")
    meta = json.loads(head)
    return Watermark(int(meta["seq"]), str(meta["id"])), state


class SharedLog:
    """The Redis side: pending selections, the claim-and-append script, the stream, and
    the snapshots with their lock. Redis errors pass through as ``redis.RedisError``."""

    def __init__(self, config: ClusterConfig) -> None:
        if redis is None:
            raise ConfigError(
                "cluster.redis_url needs the cluster extra (redis, threadpoolctl): "
                "pip install 'laser-serve[cluster]'"
            )
        self.config = config
        # No retries inside the client: a claim whose reply was lost must not run twice
        # behind our back (the caller answers UNAVAILABLE and the client's retry is
        # ALREADY_EXISTS); the reader retries on its own schedule.
        options: dict[str, Any] = {
            "socket_connect_timeout": config.timeout_s,
            "retry": Retry(NoBackoff(), 0),
        }
        self.r = redis.Redis.from_url(config.redis_url, socket_timeout=config.timeout_s, **options)
        # XREAD BLOCK holds its connection longer than a plain call may take.
        self.reader = redis.Redis.from_url(
            config.redis_url, socket_timeout=config.timeout_s + READ_BLOCK_MS / 1000, **options
        )
        p = config.key_prefix
        self.prefix, self.stream, self.counter = p, f"{p}:events", f"{p}:seq"
        self.snaps, self.lock = f"{p}:snaps", f"{p}:snaplock"
        self._claim = self.r.register_script(_CLAIM)
        self._snapshot = self.r.register_script(_SNAPSHOT)
        self._unlock = self.r.register_script(_UNLOCK)

    def _sel(self, selection_id: str) -> str:
        return f"{self.prefix}:sel:{selection_id}"

    def _done(self, selection_id: str) -> str:
        return f"{self.prefix}:done:{selection_id}"

    def put_pending(self, selection_id: str, frame: bytes, ttl_s: float) -> None:
        self.r.set(self._sel(selection_id), frame, px=max(1, int(ttl_s * 1000)))

    def lookup(self, selection_id: str) -> tuple[bytes | None, bool]:
        """(the pending decision's frame or None, whether its id was claimed)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self._sel(selection_id))
        pipe.exists(self._done(selection_id))
        frame, claimed = pipe.execute()
        return frame, bool(claimed)

    def claim(self, selection_id: str, feedback: bytes, ttl_s: float) -> tuple[str, int]:
        """Claim the selection and append its event; returns (stream id, event number).
        NotFound or AlreadyAnswered otherwise (nothing appended)."""
        keys = [self._sel(selection_id), self._done(selection_id), self.stream, self.counter]
        reply = self._claim(keys=keys, args=[feedback, max(1, int(ttl_s * 1000))])
        if reply[0] == 0:
            raise NotFound(selection_id)
        if reply[0] == 1:
            raise AlreadyAnswered(selection_id)
        return reply[1].decode(), int(reply[2])

    def read(self, after: str, block_ms: int | None) -> list[Event]:
        """Events after stream id ``after``, oldest first (waiting up to ``block_ms``)."""
        # redis-py's return types are unions over its RESP versions; RESP2 gives lists.
        reply: Any = self.reader.xread({self.stream: after}, count=READ_COUNT, block=block_ms)
        events = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                decision = journal.decode_frame(fields[b"d"])
                feedback = journal.decode_frame(fields[b"f"])
                assert isinstance(decision, DecisionRecord)
                assert isinstance(feedback, FeedbackRecord)
                events.append(Event(entry_id.decode(), int(fields[b"s"]), decision, feedback))
        return events

    def events(self) -> Iterator[Event]:
        """Every event still in the stream, oldest first (what is below the oldest kept
        snapshot was trimmed), without blocking."""
        after = "0-0"
        while batch := self.read(after, None):
            yield from batch
            after = batch[-1].id

    def decision_log(self) -> journal.DecisionLog:
        """The stream as a decision log for off-policy evaluation (``laser-bench ope
        --redis``): every event is a decision with its feedback, so every row has a reward;
        decisions still waiting for feedback are not in the stream."""

        def records() -> Iterator[journal.Record]:
            for event in self.events():
                yield event.decision
                yield event.feedback

        where = f"the stream {self.stream} at {self.config.redis_url}"
        return journal.join_decisions(records(), where)

    def head(self) -> int:
        """The number of the last event appended (0: none)."""
        return int(self.r.get(self.counter) or 0)

    def newest_snapshot(self) -> tuple[Watermark, bytes] | None:
        top: Any = self.r.zrevrange(self.snaps, 0, 0)
        if not top:
            return None
        data: Any = self.r.get(f"{self.prefix}:snap:{top[0].decode()}")
        return None if data is None else unpack_snapshot(data)

    def put_snapshot(self, mark: Watermark, data: bytes, lease_s: float) -> bool:
        """Write the shared snapshot under the lock (True), or do nothing when another
        replica holds the lock or a snapshot as new is kept (False)."""
        token = secrets.token_hex(16)
        if not self.r.set(self.lock, token, nx=True, px=max(1, int(lease_s * 1000))):
            return False
        try:
            keys = [self.lock, self.snaps, self.stream]
            args: list[Any] = [
                token,
                mark.seq,
                mark.id,
                data,
                self.config.snapshots_kept,
                self.prefix,
            ]
            return bool(self._snapshot(keys=keys, args=args))
        finally:
            self._unlock(keys=[self.lock], args=[token])


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.redis_up = Gauge(
            "laser_cluster_redis_up", "1 while the last Redis call succeeded.", registry=r
        )
        self.redis_errors = Counter(
            "laser_cluster_redis_errors", "Failed Redis calls by operation.", ["op"], registry=r
        )
        self.applied = Gauge(
            "laser_cluster_applied_events",
            "Number of the last shared-stream event applied here.",
            registry=r,
        )
        self.lag = Gauge(
            "laser_cluster_stream_lag_events",
            "Events appended to the shared stream and not yet applied here.",
            registry=r,
        )
        self.propagation = Histogram(
            "laser_cluster_propagation_seconds",
            "From an event's append (Redis's clock) to its application here.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=r,
        )
        self.snapshots = Counter(
            "laser_cluster_snapshots", "Shared snapshots written by this replica.", registry=r
        )
        self.catchup = Gauge(
            "laser_cluster_catchup_seconds",
            "Seconds this replica's start-up spent loading the snapshot and replaying the stream.",
            registry=r,
        )
        self.snapshot_loads = Counter(
            "laser_cluster_snapshot_loads",
            "Shared snapshots loaded (at start-up, or after a gap in the stream).",
            registry=r,
        )


class ClusterLearner(Learner):
    """The Learner of one replica of a cluster (module docstring)."""

    def __init__(self, config: Config, arms: tuple[str, ...], dim: int, metrics: Metrics):
        super().__init__(config, arms, dim, metrics)
        self.shared = SharedLog(config.cluster)
        # One BLAS thread in every replica: a reduction's summation order then cannot depend
        # on a machine's core count (bit-identical states), and OpenBLAS's threads make the
        # rank-1 updates of a replay 30x slower on a busy 2-core machine (measured).
        threadpool_limits(limits=1, user_api="blas")
        self.cluster = ClusterMetrics(metrics.registry)
        self.mark = Watermark()  # the last event applied
        self.redis_ok = False
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._last_error = 0.0

    # --- start-up, the reader, snapshots --------------------------------------------------

    def open(self) -> None:
        """Load the newest snapshot (shared or local), catch up with the stream, then keep
        following it in a thread. With Redis down, start from the local snapshot."""
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        local = self.dir / LOCAL_SNAPSHOT
        if local.exists():
            self._install(*unpack_snapshot(local.read_bytes()), str(local))
        try:
            self._load_shared(newer_than=self.mark.seq)
            while self._follow(block_ms=None):
                pass
        except redis.RedisError as exc:
            self._failed("start_up", exc)
            log.warning(
                "Redis unreachable at start-up; serving from the local state (event %d), "
                "catching up when it returns",
                self.mark.seq,
            )
        self.cluster.catchup.set(time.monotonic() - started)
        log.info(
            "cluster state: event %d (stream id %s), loaded and replayed in %.2fs",
            self.mark.seq,
            self.mark.id,
            time.monotonic() - started,
        )
        self._reader = threading.Thread(target=self._read_loop, name="cluster-reader", daemon=True)
        self._reader.start()
        self._publish()

    def _install(self, mark: Watermark, state: bytes, source: str) -> None:
        try:
            with self._lock:
                self.policy.loads(state, source)
                self.mark = mark
                self._dirty = True  # not yet in the local snapshot
        except SelectorStateError as exc:
            raise ConfigError(
                f"cluster snapshot does not match this replica's configuration: {exc}. Every "
                "replica of a cluster needs the same reward models, context and selector."
            ) from None
        self.cluster.applied.set(mark.seq)

    def _load_shared(self, newer_than: int) -> bool:
        found = self.shared.newest_snapshot()
        if found is None or found[0].seq <= newer_than:
            return False
        self._install(*found, f"redis snapshot at event {found[0].seq}")
        self.cluster.snapshot_loads.inc()
        log.info("loaded the shared snapshot at event %d", found[0].seq)
        return True

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow(READ_BLOCK_MS)
            except redis.RedisError as exc:
                self._failed("read", exc)
                self._stop.wait(0.2)
            except Exception:  # a bug: say so, keep following
                log.exception("cluster reader failed")
                self._stop.wait(1.0)

    def _follow(self, block_ms: int | None) -> int:
        """Apply the next batch of events; returns how many were read."""
        events = self.shared.read(self.mark.id, block_ms)
        for event in events:
            self._fold(event)
        if events:
            self._publish()
        head = self.shared.head()
        self._ok()
        if head < self.mark.seq:
            log.error(
                "the shared stream counts %d events but %d were applied here: Redis lost "
                "its data (was it started without appendonly?)",
                head,
                self.mark.seq,
            )
        self.cluster.lag.set(max(0, head - self.mark.seq))
        return len(events)

    def _fold(self, event: Event) -> None:
        if event.seq <= self.mark.seq:
            return  # covered by the snapshot loaded
        if event.seq != self.mark.seq + 1:  # the events in between were trimmed
            self._load_shared(newer_than=self.mark.seq)
            if event.seq <= self.mark.seq:
                return
            if event.seq != self.mark.seq + 1:
                log.error(
                    "events %d to %d are neither in the stream nor in a snapshot; applying "
                    "from event %d",
                    self.mark.seq + 1,
                    event.seq - 1,
                    event.seq,
                )
        dec, rec = event.decision, event.feedback
        with self._lock:
            if rec.normalized is not None and rec.reward is not None and len(dec.chosen) == 1:
                try:
                    self._learn(dec, _credited(dec), rec.reward, rec.normalized, rec.time)
                except ValueError as exc:  # the same on every replica: same state, same event
                    log.warning("event %d (%s) skipped: %s", event.seq, dec.id, exc)
                    self.skipped += 1
            self.mark = Watermark(event.seq, event.id)
            self._dirty = True
        self.cluster.applied.set(event.seq)
        appended = int(event.id.split("-")[0]) / 1000
        self.cluster.propagation.observe(max(0.0, time.time() - appended))

    def snapshot(self, force: bool = True) -> None:
        """Write the local snapshot, then the shared one if no replica holds the lock and
        none as new is kept. ``force=False`` skips it when nothing was applied since."""
        with self._snapshot_lock:
            with self._lock:
                if not force and not self._dirty:
                    return
                state, mark = self.policy.state_dict(), self.mark
                self._dirty = False
            data = pack_snapshot(mark, self.policy.dumps(state))
            atomic_write(self.dir / LOCAL_SNAPSHOT, data)
            try:
                if self.shared.put_snapshot(mark, data, self.config.cluster.snapshot_lease_s):
                    self.cluster.snapshots.inc()
                    log.info("wrote the shared snapshot at event %d", mark.seq)
                self._ok()
            except redis.RedisError as exc:
                self._failed("snapshot", exc)

    def stop(self) -> None:
        """Stop following the stream (no snapshot)."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join()

    def close(self) -> None:
        self.stop()
        self.snapshot()

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
        """Share the decision so that any replica can take its feedback. With Redis down
        the Rerank still answers; Feedback for this id will be NOT_FOUND."""
        rec = self._decision_record(
            policy, decision, x, n, chosen_index, expect_feedback, nll_reward
        )
        try:
            self.shared.put_pending(rec.id, journal.encode(rec), self.config.server.pending_ttl_s)
            self._ok()
        except redis.RedisError as exc:
            self._failed("share_selection", exc)
        return rec.id

    def feedback(self, selection_id: str, reward: float, token: str = "") -> tuple[str, float]:
        """Check, normalize and append the feedback's event; returns once Redis has it."""
        try:
            frame, claimed = self.shared.lookup(selection_id)
        except redis.RedisError as exc:
            raise self._unavailable("look up the selection", exc) from None
        if claimed:
            raise AlreadyAnswered(selection_id)
        if frame is None:
            raise NotFound(selection_id)
        dec = journal.decode_frame(frame)
        assert isinstance(dec, DecisionRecord)
        if dec.eligible != self.arms or dec.x.size != self.dim:
            raise InvalidArgument(
                "selection_id",
                f"was made over reward models {list(dec.eligible)} with a {dec.x.size}-dim "
                f"context; this replica has {list(self.arms)} and {self.dim}: every replica "
                "of a cluster needs the same configuration",
            )
        with self._lock:
            try:
                normalized = self._learned(dec, "application", reward)
            except InvalidArgument:
                self.metrics.feedback.labels(_credited(dec), "rejected").inc()
                raise
        now = time.time()
        record = FeedbackRecord(
            selection_id, now, "application", reward, normalized, now - dec.time, token
        )
        try:
            self.shared.claim(
                selection_id, journal.encode(record), self.config.server.pending_ttl_s
            )
        except redis.RedisError as exc:
            raise self._unavailable("append the feedback", exc) from None
        self._ok()
        credited = _credited(dec)
        self.metrics.feedback.labels(credited, "applied").inc()
        self.metrics.feedback_reward.labels(credited).observe(reward)
        return credited, math.nan if normalized is None else normalized

    def expire(self, now: float) -> int:
        return 0  # pending selections and claims expire in Redis (their TTL)

    # --- Redis health ---------------------------------------------------------------------

    def _ok(self) -> None:
        self.redis_ok = True
        self.cluster.redis_up.set(1)

    def _failed(self, op: str, exc: Exception) -> None:
        self.redis_ok = False
        self.cluster.redis_up.set(0)
        self.cluster.redis_errors.labels(op).inc()
        if time.monotonic() - self._last_error > 10:  # one line per outage, not per call
            self._last_error = time.monotonic()
            log.warning("Redis %s failed: %s: %s", op, type(exc).__name__, exc)

    def _unavailable(self, what: str, exc: Exception) -> Unavailable:
        self._failed("feedback", exc)
        return Unavailable(
            f"could not {what} in Redis ({type(exc).__name__}: {exc}); retry the Feedback: "
            "ALREADY_EXISTS then means this attempt did land"
        )
