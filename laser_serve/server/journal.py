"""Append-only journal of learning events, one checksummed JSON record per line.

Line format: `<crc32 of the JSON, 8 hex digits> <JSON>\\n`. A record whose line is
incomplete or whose checksum fails ends the readable journal: `read` reports it and `repair`
cuts the file there, keeping every record before it.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from laser_serve.durable import fsync_dir

log = logging.getLogger(__name__)


def encode(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), allow_nan=False)
    return f"{zlib.crc32(body.encode()):08x} {body}\n".encode()


def read(path: Path) -> tuple[list[dict[str, Any]], int, str | None]:
    """(records, bytes of the good prefix, why the rest is bad or None)."""
    data = path.read_bytes()
    records, good = [], 0
    while good < len(data):
        end = data.find(b"\n", good)
        if end < 0:
            return records, good, f"torn last record at byte {good} (no newline)"
        line = data[good:end]
        crc, _, body = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                raise ValueError("checksum mismatch")
            records.append(json.loads(body))
        except ValueError as exc:
            return records, good, f"corrupt record at byte {good}: {exc}"
        good = end + 1
    return records, good, None


def repair(path: Path) -> list[dict[str, Any]]:
    """Read the journal and cut a torn or corrupt tail, reporting it in the log."""
    records, good, problem = read(path)
    if problem:
        log.warning("journal %s: %s; cut after %d good records", path, problem, len(records))
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return records


class JournalWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "ab")
        fsync_dir(path.parent)  # a new file's name is only on disk once its folder is

    def append(self, record: dict[str, Any], sync: bool) -> None:
        """Write one record; with sync it is on disk (fsync) when this returns."""
        self._f.write(encode(record))
        self._f.flush()  # in the OS page cache: survives a killed process
        if sync:
            os.fsync(self._f.fileno())  # on disk: survives a lost machine

    def close(self) -> None:
        self._f.close()
