"""Context vectors: input checks, per-batch contexts and the fixed random projection."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np


def as_context(x: Any, dim: int) -> np.ndarray:
    """One context as a float64 vector of length ``dim``; ValueError says what is wrong."""
    arr = _as_float_array(x, "context")
    if arr.ndim != 1:
        raise ValueError(f"context must be a 1-D vector of length {dim}, got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise ValueError(f"context dimension {arr.shape[0]} does not match dim {dim}")
    if not np.isfinite(arr).all():
        raise ValueError("context contains NaN or infinite values")
    return arr


def as_contexts(X: Any, dim: int) -> np.ndarray:
    """A batch of contexts as a float64 (B, dim) array (B may be 0)."""
    arr = _as_float_array(X, "contexts")
    if arr.ndim != 2:
        raise ValueError(f"contexts must be a 2-D array of shape (B, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise ValueError(f"context dimension {arr.shape[1]} does not match dim {dim}")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(f"contexts contain NaN or infinite values (rows {bad[:5].tolist()})")
    return arr


def batch_context(X: Any) -> np.ndarray:
    """Per-batch context: the mean of the batch's context vectors (rows of ``X``)."""
    arr = _as_float_array(X, "batch")
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"batch must be a non-empty 2-D array (B, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("batch contains NaN or infinite values")
    return arr.mean(axis=0)


def as_reward(reward: Any) -> float:
    """A reward as a finite float."""
    if isinstance(reward, np.ndarray) and reward.ndim == 0:
        reward = reward.item()
    if isinstance(reward, bool | np.bool_) or not isinstance(reward, Real):
        raise ValueError(f"reward must be a real number, got {reward!r}")
    value = float(reward)
    if not math.isfinite(value):
        raise ValueError(f"reward must be finite, got {value}")
    return value


def check_arms(arms: Sequence[str]) -> tuple[str, ...]:
    """Arm names as a tuple; rejects an empty list, non-string or empty names and duplicates."""
    if isinstance(arms, str):
        raise ValueError(f"arms must be a sequence of names, got the string {arms!r}")
    names = tuple(arms)
    if not names:
        raise ValueError("arm list is empty")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"arm names must be non-empty strings, got {name!r}")
    dups = sorted(name for name, n in Counter(names).items() if n > 1)
    if dups:
        raise ValueError(f"duplicate arm names: {dups}")
    return names


def check_dim(dim: Any, what: str = "dim") -> int:
    if isinstance(dim, bool | np.bool_) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"{what} must be a positive integer, got {dim!r}")
    return int(dim)


def sparse_projection(dim: int, out_dim: int, seed: int) -> np.ndarray:
    """Fixed (out_dim, dim) very sparse random projection (Li, Hastie & Church 2006): with
    s = sqrt(dim), entries are ±sqrt(s / out_dim) with probability 1/(2s) each, else 0.
    Norms are preserved in expectation, as with a Gaussian matrix, but a 4096-dim context
    touches 1/64 of the entries, so projecting costs microseconds instead of most of a
    select."""
    rng = np.random.default_rng(seed)
    s = math.sqrt(dim)
    signs = rng.choice([-1.0, 0.0, 1.0], size=(out_dim, dim), p=[0.5 / s, 1 - 1 / s, 0.5 / s])
    return (signs * math.sqrt(s / out_dim)).astype(np.float32)


def _as_float_array(x: Any, what: str) -> np.ndarray:
    if np.iscomplexobj(x):
        raise ValueError(f"{what} must be real-valued, got complex values")
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not a numeric array: {exc}") from None
