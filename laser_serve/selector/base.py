"""The Policy interface and what every policy shares: checks, stats, rewards, state."""

from __future__ import annotations

import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.durable import atomic_write
from laser_serve.selector.context import as_context, as_contexts, as_reward, check_arms, check_dim
from laser_serve.selector.normalizer import RewardNormalizer
from laser_serve.selector.state import SelectorStateError, decode_state, encode_state

# Scores this close (relative) count as tied, so that tie-breaking by lowest index does not
# depend on BLAS rounding (a batched gemm and a single gemv may differ in the last bits).
TIE_RTOL = 1e-12

_CONFIG_LABELS = {
    "arms": "arm names differ",
    "dim": "dimension differs",
    "reward_norm": "reward normalization differs",
    "projection": "projection differs",
    "lam": "regularization lam differs",
    "normalize": "context normalization differs",
}


@dataclass(frozen=True, eq=False)
class Decision:
    """One decision: the chosen arms and the probability the policy gave every arm.

    ``arms``: the chosen arm indices (one; every arm for ``ensemble``). ``probs``: shape (K,),
    read-only, p(k|x) for each arm k as the policy stood when it decided (one-hot for a
    deterministic single-arm policy; 1.0 on every arm for ``ensemble``, which uses them
    all). ``propensity``: p of the chosen arm (1.0 for ``ensemble``). These are what an
    off-policy estimator needs from the decision log.

    >>> from laser_serve.selector import make_policy
    >>> d = make_policy("random", ["a", "b"], dim=2).decide([0.0, 1.0])
    >>> d.probs.tolist(), d.propensity
    ([0.5, 0.5], 0.5)
    """

    arms: tuple[int, ...]
    probs: np.ndarray
    propensity: float


@dataclass(frozen=True)
class ArmStats:
    """Per-arm introspection. ``mean_reward`` is of raw rewards, 0.0 before any update."""

    name: str
    index: int
    pulls: int  # number of updates
    selections: int  # times choose() returned the arm
    mean_reward: float
    mean_normalized_reward: float
    last_update: float  # unix seconds, 0.0 if never


class Policy(ABC):
    """Chooses reward models (arms) for a context and learns from rewards.

    ``name`` is the canonical spec: ``make_policy(p.name, p.arms, p.dim)`` builds the same
    kind of policy. Every public method is thread-safe (see the package docstring).
    """

    name: str
    arms: tuple[str, ...]
    dim: int

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        *,
        seed: int = 0,
        reward_norm: str = "none",
        window: int = 1000,
    ) -> None:
        self.arms = check_arms(arms)
        self.dim = check_dim(dim)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self._index = {name: i for i, name in enumerate(self.arms)}
        self._lock = threading.RLock()
        self._normalizer = RewardNormalizer(reward_norm, window)
        k = len(self.arms)
        self._pulls = np.zeros(k, dtype=np.int64)
        self._selections = np.zeros(k, dtype=np.int64)
        # The mean, not the sum, of raw rewards: with reward normalization any finite reward
        # is accepted, and a sum of such rewards could overflow where their mean cannot.
        self._reward_mean = np.zeros(k)
        self._norm_reward_sum = np.zeros(k)
        self._last_update = np.zeros(k)

    # --- choosing -------------------------------------------------------------------------

    def decide(self, x: np.ndarray) -> Decision:
        """The arms to score with for context ``x`` (shape (dim,)) and p(·|x) as the policy
        gave it at this moment (see :class:`Decision`)."""
        xv = as_context(x, self.dim)
        with self._lock:
            return self._decide_locked(xv[None, :])[0]

    def decide_batch(self, X: np.ndarray) -> list[Decision]:
        """``decide`` for each row of ``X`` (shape (B, dim)); equals B single calls."""
        Xv = as_contexts(X, self.dim)
        with self._lock:
            return self._decide_locked(Xv)

    def choose(self, x: np.ndarray) -> tuple[int, ...]:
        """Arm indices to score with for context ``x`` (``decide(x).arms``)."""
        return self.decide(x).arms

    def choose_batch(self, X: np.ndarray) -> list[tuple[int, ...]]:
        """``choose`` for each row of ``X`` (shape (B, dim)); equals B single calls."""
        return [d.arms for d in self.decide_batch(X)]

    def count_selection(self, arms: Sequence[int]) -> None:
        """Count a choice made elsewhere (a decision replayed from the journal)."""
        ks = [self.arm_index(a) for a in arms]
        with self._lock:
            self._selections[ks] += 1

    @abstractmethod
    def _decide_locked(self, X: np.ndarray) -> list[Decision]:
        """Decisions for validated (B, dim) contexts, counting selections; under the lock."""

    # --- learning -------------------------------------------------------------------------

    def update(
        self,
        arm: int | str,
        x: np.ndarray,
        reward: float,
        *,
        weight: float = 1.0,
        normalized: float | None = None,
        at: float | None = None,
    ) -> float:
        """Apply ``reward`` for ``arm`` at context ``x``; returns the normalized reward used.

        ``weight`` scales what a contextual model learns from this one update (LinUCB/LinTS:
        A += w·xxᵀ, b += w·r·x), as if it had been seen ``weight`` times; counts and reward
        sums count it once. Warm starts use it to say how many rounds a prior is worth.

        ``normalized`` learns from that value instead of this policy's normalization of
        ``reward`` (which still enters the normalizer's history and the raw-reward mean):
        replicas apply the value normalized once, when the event was logged, so the result
        cannot depend on which replica normalized it. ``at`` (unix seconds, default now) is
        the update's time; replicas pass the event's, so their states stay bit-identical.

        Every finite reward is checked against the state it would produce: an update that
        would make a statistic non-finite (a reward sum, or LinUCB's A⁻¹, b or θ) raises
        ValueError and changes nothing, so no reward, however large, can poison the state.
        """
        k, xv, r = self.arm_index(arm), as_context(x, self.dim), as_reward(reward)
        w = check_finite_param(weight, "weight", positive=True)
        rn = None if normalized is None else as_reward(normalized)
        with self._lock:
            rn, commit = self._prepare_locked(k, xv, r, w, rn)
            commit(time.time() if at is None else float(at))
            return rn

    def check_update(self, arm: int | str, x: np.ndarray, reward: float) -> float:
        """What ``update`` would return, or the ValueError it would raise; changes nothing
        (the server checks a reward before it journals it, and applies it after)."""
        k, xv, r = self.arm_index(arm), as_context(x, self.dim), as_reward(reward)
        with self._lock:
            return self._prepare_locked(k, xv, r, 1.0)[0]

    def _prepare_locked(
        self, k: int, x: np.ndarray, r: float, weight: float, normalized: float | None = None
    ) -> tuple[float, Callable[[float], None]]:
        rn = self._normalizer.peek(r) if normalized is None else normalized
        n = int(self._pulls[k]) + 1
        mean = float(self._reward_mean[k])
        reward_mean = mean + (r / n - mean / n)  # each term finite: no overflow on the way
        norm_sum = float(self._norm_reward_sum[k]) + rn
        if not (math.isfinite(reward_mean) and math.isfinite(norm_sum)):
            raise ValueError(
                f"reward {r!r} refused: the reward statistics of arm {self.arms[k]!r} would "
                "overflow"
            )
        learn = self._plan(k, x, rn, weight)  # checks its own statistics; changes nothing yet

        def commit(now: float) -> None:
            learn()
            self._normalizer.record(r)
            self._pulls[k] += 1
            self._reward_mean[k] = reward_mean
            self._norm_reward_sum[k] = norm_sum
            self._last_update[k] = now

        return rn, commit

    def _plan(self, k: int, x: np.ndarray, reward: float, weight: float) -> Callable[[], None]:
        """A contextual policy's learning step for arm ``k`` (the stats are ``update``'s), as
        a function that applies it; raises ValueError, having changed nothing, if its
        statistics would become non-finite."""
        return lambda: None

    def arm_index(self, arm: int | str) -> int:
        """Index of an arm given by index or name; ValueError for an unknown arm."""
        if isinstance(arm, str):
            if arm in self._index:
                return self._index[arm]
        elif isinstance(arm, int | np.integer) and not isinstance(arm, bool | np.bool_):
            if 0 <= arm < len(self.arms):
                return int(arm)
        raise ValueError(f"unknown arm {arm!r}; arms are {list(self.arms)}")

    # --- introspection --------------------------------------------------------------------

    def stats(self) -> list[ArmStats]:
        with self._lock:
            return [
                ArmStats(
                    name=name,
                    index=k,
                    pulls=int(self._pulls[k]),
                    selections=int(self._selections[k]),
                    mean_reward=float(self._reward_mean[k]),
                    mean_normalized_reward=_mean(self._norm_reward_sum[k], self._pulls[k]),
                    last_update=float(self._last_update[k]),
                )
                for k, name in enumerate(self.arms)
            ]

    def params(self) -> dict[str, float | int | str]:
        norm = self._normalizer
        return {
            "policy": self.name,
            "arms": len(self.arms),
            "dim": self.dim,
            "seed": self.seed,
            "reward_norm": norm.mode,
            "window": norm.window,
        }

    @property
    def normalizer(self) -> RewardNormalizer:
        """The reward normalizer, for reading (``bounds()``, ``history``); not locked."""
        return self._normalizer

    # --- state ----------------------------------------------------------------------------

    @property
    def _state_policy(self) -> str:
        """The policy a saved state must come from to load here (its ``policy`` field)."""
        return self.name

    def _config(self) -> dict[str, Any]:
        """Configuration that a saved state must match (JSON)."""
        return {"arms": list(self.arms), "dim": self.dim, "reward_norm": self._normalizer.mode}

    def _arrays(self) -> dict[str, np.ndarray]:
        """State arrays (copies); called under the lock."""
        return {
            "pulls": self._pulls.copy(),
            "selections": self._selections.copy(),
            "reward_mean": self._reward_mean.copy(),
            "norm_reward_sum": self._norm_reward_sum.copy(),
            "last_update": self._last_update.copy(),
        }

    def _extra(self) -> dict[str, Any]:
        """Small JSON state; called under the lock."""
        return {"normalizer": self._normalizer.state_dict()}

    def _parse_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Check the JSON state and build what ``_install`` needs; may raise, changes nothing."""
        normalizer = RewardNormalizer(**self._normalizer.config())
        normalizer.load_state_dict(extra["normalizer"])
        return {"normalizer": normalizer}

    def _install(self, arrays: dict[str, np.ndarray], parsed: dict[str, Any]) -> None:
        """Install checked state (arrays already copied); called under the lock."""
        self._pulls = arrays["pulls"]
        self._selections = arrays["selections"]
        self._reward_mean = arrays["reward_mean"]
        self._norm_reward_sum = arrays["norm_reward_sum"]
        self._last_update = arrays["last_update"]
        self._normalizer = parsed["normalizer"]

    def _array_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        k = len(self.arms)
        return {
            "pulls": ((k,), "i8"),
            "selections": ((k,), "i8"),
            "reward_mean": ((k,), "f8"),
            "norm_reward_sum": ((k,), "f8"),
            "last_update": ((k,), "f8"),
        }

    def state_dict(self) -> dict[str, Any]:
        """A consistent snapshot: {"policy", "config", "extra" (JSON), "arrays" (copies)}."""
        with self._lock:
            return {
                "policy": self._state_policy,
                "config": self._config(),
                "extra": self._extra(),
                "arrays": self._arrays(),
            }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "state") -> None:
        """Replace this policy's state; SelectorStateError if it does not match the config."""
        try:
            policy, config = state["policy"], state["config"]
            extra, arrays = state["extra"], state["arrays"]
        except (KeyError, TypeError):
            raise SelectorStateError(f"{source}: malformed selector state") from None
        if policy != self._state_policy:
            raise SelectorStateError(
                f"{source}: state is for policy {policy!r}, this policy is {self._state_policy!r}"
            )
        problems = self._mismatches(config)
        if problems:
            raise SelectorStateError(
                f"{source}: saved state does not match this configuration: " + "; ".join(problems)
            )
        shapes = self._array_shapes()
        arrays = self._upgrade(dict(arrays))
        if set(arrays) != set(shapes):
            raise SelectorStateError(
                f"{source}: state arrays {sorted(arrays)} differ from expected {sorted(shapes)}"
            )
        checked = {}
        for key, (shape, dtype) in shapes.items():
            a = np.array(arrays[key], copy=True)  # never alias the caller's arrays
            if a.shape != shape or a.dtype != np.dtype(dtype):
                raise SelectorStateError(
                    f"{source}: array {key!r} has shape {a.shape} and dtype {a.dtype}, "
                    f"expected {shape} and {np.dtype(dtype)}"
                )
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise SelectorStateError(f"{source}: array {key!r} has non-finite values")
            checked[key] = a
        if (checked["pulls"] < 0).any() or (checked["selections"] < 0).any():
            raise SelectorStateError(f"{source}: negative counts")
        try:
            parsed = self._parse_extra(extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise SelectorStateError(f"{source}: malformed selector state: {exc}") from None
        with self._lock:
            self._install(checked, parsed)

    def _upgrade(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Arrays saved by older builds, in this build's terms (before a shape check)."""
        if "reward_sum" in arrays and "reward_mean" not in arrays:
            total = np.asarray(arrays.pop("reward_sum"), dtype=np.float64)
            pulls = np.asarray(arrays.get("pulls", np.zeros_like(total)))
            arrays["reward_mean"] = np.divide(
                total, pulls, out=np.zeros_like(total), where=pulls > 0
            )
        return arrays

    def _mismatches(self, saved: dict[str, Any]) -> list[str]:
        """Human-readable differences between a saved config and this one."""
        out = []
        for key, value in self._config().items():
            if saved.get(key) != value:
                what = _CONFIG_LABELS.get(key, f"{key} differs")
                out.append(f"{what} (state: {saved.get(key)!r}, policy: {value!r})")
        return out

    def save(self, path: str | os.PathLike[str], state: dict[str, Any] | None = None) -> None:
        """Write the state atomically (snapshot under the lock, file I/O outside it), or a
        ``state_dict()`` taken earlier (a caller's consistent cut)."""
        atomic_write(path, self.dumps(state))

    def dumps(self, state: dict[str, Any] | None = None) -> bytes:
        """The state file's bytes (of ``state``, a ``state_dict()``, or of the state now)."""
        sd = self.state_dict() if state is None else state
        header = {"policy": sd["policy"], "config": sd["config"], "extra": sd["extra"]}
        return encode_state(header, sd["arrays"])

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load a state saved by a policy of the same configuration."""
        self.loads(Path(path).read_bytes(), os.fspath(path))

    def loads(self, data: bytes, source: str = "state") -> None:
        """``load`` from the bytes ``dumps`` made; ``source`` names them in errors."""
        header, arrays = decode_state(data, source)
        state = {
            "policy": header.get("policy"),
            "config": header.get("config", {}),
            "extra": header.get("extra", {}),
            "arrays": arrays,
        }
        self.load_state_dict(state, source=source)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, arms={self.arms!r}, dim={self.dim})"


class SingleArmPolicy(Policy):
    """A policy that picks exactly one arm per context."""

    def _decide_locked(self, X: np.ndarray) -> list[Decision]:
        picks, probs = self._decide(X)
        self._selections += np.bincount(picks, minlength=len(self.arms))
        probs.setflags(write=False)  # each Decision holds a read-only row of it
        return [Decision((int(k),), probs[i], float(probs[i, k])) for i, k in enumerate(picks)]

    @abstractmethod
    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the validated (B, dim) contexts: the chosen arm of each row (int64, (B,)) and
        p(·|x) of each row ((B, K), rows summing to 1); called under the lock."""


class SeededPolicy(SingleArmPolicy):
    """A single-arm policy with a numpy Generator, saved with its state so that a loaded
    policy continues the same sequence. Draws use one double per choice where they can
    (``Generator.random``), so a batch consumes the stream as the same single calls would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Policy's arguments
        super().__init__(*args, **kwargs)
        self._rng = np.random.default_rng(self.seed)

    def _uniform_arm(self) -> int:
        return min(int(self._rng.random() * len(self.arms)), len(self.arms) - 1)

    def _sample(self, probs: np.ndarray) -> np.ndarray:
        """One arm per row of (B, K) probabilities, by inverting the row's CDF at one uniform
        draw; a row with a 1.0 entry is that arm and draws nothing."""
        picks = probs.argmax(axis=1)
        random = np.max(probs, axis=1) < 1.0
        if random.any():
            cdf = np.cumsum(probs[random], axis=1)
            u = self._rng.random((cdf.shape[0], 1)) * cdf[:, -1:]
            picks[random] = np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1)
        return picks

    def _extra(self) -> dict[str, Any]:
        return {**super()._extra(), "rng": self._rng.bit_generator.state}

    def _parse_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        parsed = super()._parse_extra(extra)
        if "rng" not in extra:  # LinUCB states saved before it could explore have none
            return {**parsed, "rng": np.random.default_rng(self.seed)}
        bit_generator = np.random.PCG64()
        bit_generator.state = extra["rng"]  # ValueError/TypeError on a malformed state
        return {**parsed, "rng": np.random.Generator(bit_generator)}

    def _install(self, arrays: dict[str, np.ndarray], parsed: dict[str, Any]) -> None:
        super()._install(arrays, parsed)
        self._rng = parsed["rng"]


def one_hot(picks: np.ndarray, k: int) -> np.ndarray:
    """(B, K) probabilities of a deterministic choice: 1.0 on each row's pick."""
    probs = np.zeros((picks.shape[0], k))
    probs[np.arange(picks.shape[0]), picks] = 1.0
    return probs


def argmax_lowest(scores: np.ndarray) -> np.ndarray:
    """Row-wise argmax of (B, K) scores; near-ties (TIE_RTOL) go to the lowest index."""
    if scores.shape[0] == 1:  # the per-request path: scalar maths is cheaper
        row = scores[0]
        top = float(row.max())
        return np.array([np.argmax(row >= top - TIE_RTOL * max(1.0, abs(top)))])
    top = scores.max(axis=1, keepdims=True)
    return np.argmax(scores >= top - TIE_RTOL * np.maximum(1.0, np.abs(top)), axis=1)


def _mean(total: float, n: int) -> float:
    return float(total / n) if n else 0.0


def check_finite_param(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{what} must be a finite {kind} number, got {value!r}")
    return v
