"""The journal: the server's write-ahead log of learning events and its decision log.

Two record types, defined once here: :class:`DecisionRecord` (a Rerank's choice, with what
off-policy evaluation needs: the context, p(·|x) over the eligible arms, the propensity) and
:class:`FeedbackRecord` (how a selection ended: the raw and the normalized reward, where it
came from, its delay, and the bearer token's name). The learner's snapshot stores its pending
selections as DecisionRecords in the same format.

Format 2 (written by this build). A file starts with ``MAGIC``; then one frame per record::

    <u32 body length> <u32 CRC-32 of body> <body>                     (little-endian)
    body = <u32 header length> <header: compact UTF-8 JSON> <float32 arrays>

The header holds the record's scalar fields, its ``type`` and, under ``"arrays"``, the
length of each vector field; the vectors follow as little-endian float32 in that order (a
384-dim context takes 1,536 bytes instead of ~8 KB as JSON floats). A record that is cut
short or fails its CRC ends the readable file: ``read`` reports it, ``repair`` cuts it off.

Format 1 (older builds): one ``<crc32, 8 hex digits> <JSON>\\n`` line per record, with
types selection, feedback and expire and the context as JSON floats. It is read, never
written: a v1 selection becomes a DecisionRecord with one-hot probabilities, propensity 1,
no policy parameters, replica "", n 0 and candidate index -1 (not logged then); a v1
feedback becomes a FeedbackRecord with source application or auto_nll, normalized reward
and delay unknown (None, nan) and token ""; a v1 expire becomes source "expired". Old
files are replayed where they are, and new records always go to a new format-2 file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from laser_serve.durable import fsync_dir

log = logging.getLogger(__name__)

MAGIC = b"laser-journal 2\n"
MAX_BODY = 1 << 26  # 64 MiB: a longer length field is corruption, not a record
SOURCES = ("application", "auto_nll", "expired", "dropped")  # dropped: by --rebuild filters
_FRAME = struct.Struct("<II")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, eq=False)
class DecisionRecord:
    """One Rerank's choice. ``eligible`` names the arms that could be chosen, in the order of
    ``probs``; ``chosen`` indexes into it. ``x`` is the context the selector was given."""

    id: str
    time: float  # unix seconds
    replica: str  # server.replica_id, or the host name
    policy: str  # the choosing policy's spec
    params: dict[str, Any]  # its parameters (Policy.params())
    eligible: tuple[str, ...]
    x: np.ndarray  # float32 (dim,)
    probs: np.ndarray  # float32 (len(eligible),): p(arm | x)
    chosen: tuple[int, ...]
    propensity: float  # p of the chosen arm (1.0 for ensemble)
    n: int  # candidates scored
    chosen_index: int  # the candidate returned
    expect_feedback: bool
    nll_reward: float | None  # mean log-prob of the chosen candidate (auto_feedback)

    @property
    def chosen_names(self) -> list[str]:
        return [self.eligible[i] for i in self.chosen]


@dataclass(frozen=True)
class FeedbackRecord:
    """How a selection ended. ``reward`` is as received (None when none came: expired);
    ``normalized`` is what the learning policy learned from (None: nothing learned, e.g. an
    ensemble selection, or unknown in a v1 journal)."""

    id: str
    time: float
    source: str  # one of SOURCES
    reward: float | None
    normalized: float | None
    delay: float  # seconds since the decision (nan when unknown)
    token: str  # name of the bearer token that sent it ("" without token auth)


Record = DecisionRecord | FeedbackRecord
_TYPES: dict[str, type[DecisionRecord] | type[FeedbackRecord]] = {
    "decision": DecisionRecord,
    "feedback": FeedbackRecord,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


# Per record type, its fields by kind (from the annotations): the codec's whole schema.
def _kind(annotation: str) -> str:
    """ "float", "float?" (float | None), "tuple", "np.ndarray", ... from an annotation."""
    base = annotation.split(" ")[0].split("[")[0]
    return base + "?" if annotation.endswith("| None") else base


_KINDS = {
    cls: {f.name: _kind(str(f.type)) for f in dataclasses.fields(cls)} for cls in _TYPES.values()
}


def encode(record: Record) -> bytes:
    """One format-2 frame."""
    header: dict[str, Any] = {"type": _NAMES[type(record)]}
    arrays = []
    for name, kind in _KINDS[type(record)].items():
        value = getattr(record, name)
        if kind == "np.ndarray":
            arrays.append(np.ascontiguousarray(value, dtype="<f4"))
            header.setdefault("arrays", {})[name] = int(arrays[-1].size)
        elif kind.startswith("float") and value is not None and not math.isfinite(value):
            header[name] = None  # nan (unknown); JSON has no nan
        else:
            header[name] = value  # json writes tuples as lists
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    body = b"".join([_U32.pack(len(head)), head, *(a.tobytes() for a in arrays)])
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def decode(body: bytes) -> Record:
    (size,) = _U32.unpack_from(body)
    header = json.loads(body[4 : 4 + size])
    cls = _TYPES[header.pop("type")]
    offset = 4 + size
    for name, count in header.pop("arrays", {}).items():
        header[name] = np.frombuffer(body, dtype="<f4", count=count, offset=offset).copy()
        offset += 4 * count
    if offset != len(body):
        raise ValueError(f"{len(body) - offset} bytes after the arrays")
    for name, kind in _KINDS[cls].items():
        if kind == "tuple":
            header[name] = tuple(header[name])
        elif kind == "float" and header[name] is None:
            header[name] = math.nan
    return cls(**header)


def read(path: Path, arms: Sequence[str] = ()) -> tuple[list[Record], int, str | None]:
    """(records, bytes of the good prefix, why the rest is bad or None). ``arms`` names the
    configured arms, which format-1 records refer to by index."""
    data = path.read_bytes()
    if data.startswith(MAGIC):
        return _read_v2(data)
    if MAGIC.startswith(data):  # empty, or the magic itself cut short
        return [], 0, None if not data else "torn file header"
    return _read_v1(data, tuple(arms))


def _read_v2(data: bytes) -> tuple[list[Record], int, str | None]:
    framed, good, problem = read_frames(data)
    return [record for record, _ in framed], good, problem


def read_frames(data: bytes) -> tuple[list[tuple[Record, bytes]], int, str | None]:
    """Each readable record of a format-2 file with its frame bytes (as ``encode`` made
    them), the bytes of the good prefix, and why the rest is bad or None."""
    out: list[tuple[Record, bytes]] = []
    good = len(MAGIC)
    while good < len(data):
        if len(data) - good < _FRAME.size:
            return out, good, f"torn last record at byte {good} (short frame header)"
        size, crc = _FRAME.unpack_from(data, good)
        start = good + _FRAME.size
        if size > MAX_BODY:
            return out, good, f"corrupt record at byte {good}: length {size}"
        if start + size > len(data):
            return out, good, f"torn last record at byte {good} ({size} bytes announced)"
        body = data[start : start + size]
        if zlib.crc32(body) != crc:
            return out, good, f"corrupt record at byte {good}: checksum mismatch"
        try:
            out.append((decode(body), data[good : start + size]))
        except (ValueError, KeyError, TypeError) as exc:
            return out, good, f"corrupt record at byte {good}: {exc!r}"
        good = start + size
    return out, good, None


def decode_frame(frame: bytes) -> Record:
    """The record in one frame that ``encode`` made (already checked when it was read)."""
    return decode(frame[_FRAME.size :])


def _read_v1(data: bytes, arms: tuple[str, ...]) -> tuple[list[Record], int, str | None]:
    records: list[Record] = []
    good = 0
    while good < len(data):
        end = data.find(b"\n", good)
        if end < 0:
            return records, good, f"torn last record at byte {good} (no newline)"
        crc, _, body = data[good:end].partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                raise ValueError("checksum mismatch")
            records.append(from_v1(json.loads(body), arms))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return records, good, f"corrupt record at byte {good}: {exc}"
        good = end + 1
    return records, good, None


def from_v1(record: dict[str, Any], arms: tuple[str, ...]) -> Record:
    """A format-1 record (a v1 learner snapshot's pending entries too) as a typed record."""
    kind = record.get("type", "selection")
    if kind == "selection":
        chosen = tuple(int(a) for a in record["arms"])
        probs = np.zeros(len(arms), dtype=np.float32)
        probs[list(chosen)] = 1.0
        nll = record["nll_reward"]
        return DecisionRecord(
            id=record["id"],
            time=float(record["created"]),
            replica="",
            policy=record["policy"],
            params={},
            eligible=arms,
            x=np.asarray(record["x"], dtype=np.float32),
            probs=probs,
            chosen=chosen,
            propensity=1.0,
            n=0,
            chosen_index=-1,
            expect_feedback=bool(record["expect_feedback"]),
            nll_reward=None if nll is None else float(nll),
        )
    if kind == "feedback":
        source = {"app": "application", "nll": "auto_nll"}[record["source"]]
        return FeedbackRecord(
            record["id"], float(record["time"]), source, float(record["reward"]), None, math.nan, ""
        )
    if kind == "expire":
        return FeedbackRecord(record["id"], math.nan, "expired", None, None, math.nan, "")
    raise ValueError(f"unknown record type {kind!r}")


def repair(path: Path, arms: Sequence[str] = ()) -> list[Record]:
    """Read the journal and cut a torn or corrupt tail, reporting it in the log."""
    records, good, problem = read(path, arms)
    if problem:
        log.warning("journal %s: %s; cut after %d good records", path, problem, len(records))
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return records


def write_frames(f: BinaryIO, frames: Iterable[bytes]) -> None:
    """Write a whole format-2 file of encoded records to ``f`` (the learner snapshot's
    pending selections, kept encoded as they were journaled)."""
    f.write(MAGIC)
    f.writelines(frames)


def segments(folder: Path) -> list[Path]:
    """The journal files ``journal-<generation>.log`` of a state dir, oldest first."""
    return sorted(folder.glob("journal-*.log"), key=generation_of)


def generation_of(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def read_all(folder: Path, arms: Sequence[str] = ()) -> Iterator[tuple[Path, Record]]:
    """Every readable record of every segment, oldest first, without changing any file
    (a torn tail, as a running server may have, is reported and skipped)."""
    for path in segments(folder):
        records, _, problem = read(path, arms)
        if problem:
            log.warning(
                "journal %s: %s; reading the %d records before it", path, problem, len(records)
            )
        for record in records:
            yield path, record


class JournalWriter:
    """Appends format-2 frames to a new segment file (never to an existing one: its records
    may already be covered by a snapshot)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "xb")
        self._f.write(MAGIC)
        self._f.flush()
        os.fsync(self._f.fileno())
        fsync_dir(path.parent)  # a new file's name is only on disk once its folder is

    def append(self, record: Record | bytes, sync: bool) -> None:
        """Write one record (or its frame); with sync it is on disk (fsync) on return."""
        self._f.write(record if isinstance(record, bytes) else encode(record))
        self._f.flush()  # in the OS page cache: survives a killed process
        if sync:
            os.fsync(self._f.fileno())  # on disk: survives a lost machine

    def close(self) -> None:
        self._f.close()


def format_of(path: Path) -> int:
    """1 or 2; an empty file counts as format 2 (the header is written first)."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    return 2 if MAGIC.startswith(head) else 1


@dataclass(frozen=True, eq=False)
class DecisionLog:
    """The journal's decisions joined with their feedback: one row per decision that got a
    reward (built by :func:`decision_log`).

    ``arms`` and the context dimension are those of the latest decision; ``contexts`` (N, d)
    float64, ``chosen`` (N,) indices into ``arms``, ``probs`` (N, K) p(·|x) as logged,
    ``rewards`` (N,) the normalized reward the selector learned from (a format-1 feedback
    has none logged: its raw reward stands in, counted under "raw_reward"), ``sources``
    (N,) application or auto_nll, ``policies`` (N,) the spec that chose. ``params``: the
    parameters of the latest decision. ``counts``: decisions, rows, and why the others are
    not rows (no_feedback: still pending; expired; dropped by a rebuild filter; several_arms:
    ensemble choices credit no single arm; other_arms: made over another arm list or
    context dimension; orphan_feedback: its decision is in no kept segment).
    """

    arms: tuple[str, ...]
    contexts: np.ndarray
    chosen: np.ndarray
    probs: np.ndarray
    rewards: np.ndarray
    sources: tuple[str, ...]
    policies: tuple[str, ...]
    params: dict[str, Any]
    counts: dict[str, int]

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    @property
    def propensities(self) -> np.ndarray:
        """p of each chosen arm, read from ``probs`` (the one logged vector, so the logged
        policy's importance weights are exactly 1)."""
        return self.probs[np.arange(len(self)), self.chosen]


def decision_log(folder: Path, arms: Sequence[str] = ()) -> DecisionLog:
    """Join every segment's decisions with their feedback (:func:`read_all`, so a torn tail
    is skipped, not cut). ``arms``: the configured arm names, needed only to read
    format-1 segments (they name arms by index). ValueError when there is no journal, a
    format-1 segment comes without ``arms``, or no decision has a reward yet."""
    paths = segments(folder)
    if not paths:
        raise ValueError(f"{folder} holds no journal (journal-*.log); is it a state dir?")
    v1 = [p.name for p in paths if format_of(p) == 1]
    if v1 and not arms:
        raise ValueError(
            f"{folder} has format-1 journal segments ({', '.join(v1)}), which name arms by "
            "index: pass the configured reward model names in order"
        )
    return join_decisions((record for _, record in read_all(folder, arms)), str(folder))


def join_decisions(records: Iterable[Record], where: str) -> DecisionLog:
    """Decisions joined with their feedback, from records in log order (a journal's, or a
    cluster stream's decision/feedback pairs); ``where`` names the source in errors."""
    decisions: dict[str, DecisionRecord] = {}
    outcomes: dict[str, FeedbackRecord] = {}
    counts = dict.fromkeys(
        ("decisions", "rows", "no_feedback", "expired", "dropped", "several_arms"), 0
    )
    counts |= {"other_arms": 0, "orphan_feedback": 0, "raw_reward": 0}
    for record in records:
        if isinstance(record, DecisionRecord):
            decisions[record.id] = record
        elif record.id in decisions:
            outcomes[record.id] = record
        else:
            counts["orphan_feedback"] += 1
    counts["decisions"] = len(decisions)
    if not decisions:
        raise ValueError(f"{where} holds no decisions yet")
    last = next(reversed(decisions.values()))
    shape = (last.eligible, last.x.size)
    rows: list[tuple[DecisionRecord, FeedbackRecord, float]] = []
    for dec in decisions.values():
        fb = outcomes.get(dec.id)
        if fb is None:
            counts["no_feedback"] += 1
        elif fb.source in ("expired", "dropped"):
            counts[fb.source] += 1
        elif len(dec.chosen) != 1:
            counts["several_arms"] += 1
        elif (dec.eligible, dec.x.size) != shape:
            counts["other_arms"] += 1
        else:
            reward = fb.normalized if fb.normalized is not None else fb.reward
            counts["raw_reward"] += fb.normalized is None
            assert reward is not None  # a learning source always carries one
            rows.append((dec, fb, float(reward)))
    counts["rows"] = len(rows)
    if not rows:
        why = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v and k != "decisions"
        )
        raise ValueError(
            f"none of the {len(decisions)} decisions in {where} has a reward yet ({why}); "
            "send Feedback for Reranks made with expect_feedback"
        )
    return DecisionLog(
        arms=last.eligible,
        contexts=np.stack([d.x for d, _, _ in rows]).astype(np.float64),
        chosen=np.array([d.chosen[0] for d, _, _ in rows], dtype=np.int64),
        probs=np.stack([d.probs for d, _, _ in rows]).astype(np.float64),
        rewards=np.array([r for _, _, r in rows]),
        sources=tuple(f.source for _, f, _ in rows),
        policies=tuple(d.policy for d, _, _ in rows),
        params=dict(last.params),
        counts=counts,
    )
