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

    def append(self, record: dict[str, Any], sync: bool) -> None:
        """Write one record; with sync it is on disk (fsync) when this returns."""
        self._f.write(encode(record))
        self._f.flush()  # in the OS page cache: survives a killed process
        if sync:
            os.fsync(self._f.fileno())  # on disk: survives a lost machine

    def close(self) -> None:
        self._f.close()


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_dir(folder: Path) -> int:
    """Hold an exclusive lock on `folder` for the life of this process (the kernel drops it
    when the process dies, SIGKILL included), so two servers never append to one journal.
    Returns the lock's file descriptor; raises ConfigError when another process holds it."""
    import fcntl

    from laser_serve.errors import ConfigError

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"server.state_dir {folder} is in use by another laser-serve (pid {holder}); "
            "give each server its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
