"""Durable files: atomic replacement, directory fsync and the state-dir lock.

The one implementation that the selector state, the server's journal and snapshots, training
checkpoints and the benches' caches use. "Durable" means it survives a lost machine, not just
a killed process: file data is fsynced before the rename, and the directory after it (a rename
or a new file is only on disk once its directory is).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from laser_serve.errors import ConfigError


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with ``data`` (bytes, or a function that writes to the open file)
    so that a reader sees the old file or the whole new one, never a mix: temp file in the
    same folder, fsync, rename, fsync the folder. A replaced file keeps its mode; a failed
    write leaves the old file and no temp file."""
    target = Path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_dir(folder: Path) -> int:
    """Hold an exclusive lock on `folder` for the life of this process (the kernel drops it
    when the process dies, SIGKILL included), so two servers never append to one journal.
    Returns the lock's file descriptor; raises ConfigError when another process holds it."""
    import fcntl

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
