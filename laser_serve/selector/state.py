"""On-disk state: one uncompressed ``.npz`` with a JSON header, written atomically.

The selector's state uses it, and so does the server's learner snapshot (``kind`` names which).

Layout (format version 1): member ``header`` is the UTF-8 JSON header as a uint8 array;
each state array ``name`` is member ``a_<name>``. The header records the format name and
version, the policy, its configuration, small JSON state, and each array's dtype, shape and
SHA-256. Loading uses ``allow_pickle=False`` and checks every digest, so a truncated or
corrupted file raises :class:`SelectorStateError` instead of loading garbage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import numpy as np

from laser_serve.durable import atomic_write

FORMAT = "laser-serve/selector-state"
VERSION = 1


class SelectorStateError(ValueError):
    """A selector state file is unreadable, corrupt, or does not match the policy."""


def write_state(
    path: str | os.PathLike[str],
    header: dict[str, Any],
    arrays: dict[str, Any],
    *,
    kind: str = FORMAT,
) -> None:
    """Write atomically (``laser_serve.durable``); ``kind`` names the format in the header."""
    atomic_write(path, encode_state(header, arrays, kind=kind))


def encode_state(header: dict[str, Any], arrays: dict[str, Any], *, kind: str = FORMAT) -> bytes:
    """The bytes of a state file (also what a cluster snapshot stores in Redis)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    meta = dict(header, format=kind, version=VERSION)
    meta["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
        for name, a in arrays.items()
    }
    members: dict[str, Any] = {
        "header": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    }
    members.update({f"a_{name}": a for name, a in arrays.items()})
    out = io.BytesIO()
    np.savez(out, **members)
    return out.getvalue()


def read_state(
    path: str | os.PathLike[str], *, kind: str = FORMAT
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a state file of format ``kind``; returns (header, arrays).

    A missing file raises FileNotFoundError (the caller decides whether to start fresh);
    anything unreadable raises SelectorStateError naming the file.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:  # FileNotFoundError and friends pass through
        data = f.read()
    return decode_state(data, name, kind=kind)


def decode_state(
    data: bytes, name: str, *, kind: str = FORMAT
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``read_state`` of bytes; ``name`` says where they came from in errors."""
    what = kind.rsplit("/", 1)[-1].replace("-", " ")  # "selector state"
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise SelectorStateError(f"{name}: not a {what} file (not an npz)")
        with npz:
            header, arrays = _read_members(name, npz, kind, what)
    except SelectorStateError:
        raise
    except Exception as exc:  # zipfile, numpy, JSON and decoding errors all mean corrupt
        raise SelectorStateError(
            f"{name}: corrupt or truncated {what} ({type(exc).__name__}: {exc})"
        ) from exc
    return header, arrays


def _read_members(
    name: str, npz: Any, kind: str, what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if "header" not in npz.files:
        raise SelectorStateError(f"{name}: not a {what} file (no header)")
    header = json.loads(npz["header"].tobytes().decode("utf-8"))
    if not isinstance(header, dict) or header.get("format") != kind:
        raise SelectorStateError(f"{name}: not a {what} file (format)")
    if header.get("version") != VERSION:
        raise SelectorStateError(
            f"{name}: unsupported state format version {header.get('version')!r} "
            f"(this build reads version {VERSION})"
        )
    specs = header["arrays"]
    extra = set(npz.files) - {"header"} - {f"a_{k}" for k in specs}
    if extra:
        raise SelectorStateError(f"{name}: unexpected members {sorted(extra)}")
    arrays = {}
    for key, spec in specs.items():
        a = npz[f"a_{key}"]
        if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
            raise SelectorStateError(f"{name}: array {key!r} has the wrong dtype or shape")
        if _digest(a) != spec["sha256"]:
            raise SelectorStateError(f"{name}: checksum mismatch in array {key!r}")
        arrays[key] = a
    return header, arrays


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()
