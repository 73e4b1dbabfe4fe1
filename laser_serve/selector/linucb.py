"""LinUCB with disjoint arms (Li et al. 2010), as LASeR uses it, and the ridge statistics it
shares with LinTS (``RidgePolicy``).

score_k(x) = θ_kᵀx + α·sqrt(xᵀA_k⁻¹x), A_k = λI + Σ x xᵀ, b_k = Σ r·x, θ_k = A_k⁻¹ b_k.

``RidgePolicy`` keeps A⁻¹, θ and b and computes the mean θ_kᵀx and the width α·sqrt(xᵀA_k⁻¹x)
of every arm; a subclass only says how to choose from them (``LinUCB`` here, ``LinTS`` in
lints.py). LinUCB's exploration floor (``epsilon``, ``band``) makes it randomized with an
exact p(·|x).

A_k⁻¹ lives in one contiguous (K, d, d) float64 array and is kept current by Sherman–Morrison
rank-1 updates; θ_k is updated by the equivalent recursive-least-squares step
θ ← θ + u·(r − θᵀx)/(1 + xᵀu) with u = A⁻¹x, so no call ever inverts a matrix. A_k itself
(the Gram matrix λI + Σ x xᵀ) is not kept: replicas (issue #12) share the rank-1 update events
(arm, x, normalized r) of one ordered log and each applies them with ``update``, so none ever
adds another's matrices; that halves LinUCB's memory.

An update is checked before it is applied: if A⁻¹, b or θ would become non-finite, or their
squared norms would (then θᵀx or xᵀA⁻¹x could overflow for a unit x), ``update`` raises
ValueError and the state stays as it was.

Two kernels give the same results up to rounding:

- ``full``: both triangles of A⁻¹ are maintained (BLAS dger); a select is one gemv/gemm over
  the flattened (K·d, d) array, i.e. one pass over all A⁻¹ for a whole batch.
- ``sym``: only one triangle is maintained (dsyr) and selects use dsymv/dsymm, which read
  half of each matrix. Selects and updates are bandwidth-bound at large d, so this halves
  their cost there; at small d the K separate BLAS calls cost more than they save.

``kernel="auto"`` picks ``sym`` from ``SYM_MIN_DIM`` (projected) dimensions up.

With ``project_to=d′`` the context is first mapped by a fixed seeded very sparse random
matrix (``sparse_projection``: norms preserved in expectation, 1/sqrt(d) of the entries
nonzero), stored in float32 (hidden states carry no more precision) and applied as a CSR
matrix: a dense d′×d matrix would be read on every select, which at d=4096 was 40% of a
projected select. Everything the bandit learns (A⁻¹, θ, b) is float64.

Every BLAS call on the hot path goes through ``scipy.linalg.blas``. numpy and scipy wheels
each bundle their own OpenBLAS with its own thread pool; alternating between the two (numpy
matmul for a projection, then scipy dger for the update) made the idle pool's spinning
workers starve the other's on a 2-core machine, costing 4–8 ms per call.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg.blas import ddot, dgemm, dgemv, dger, dsymm, dsymv, dsyr
from scipy.sparse import csr_array

from laser_serve.selector.base import (
    SeededPolicy,
    argmax_lowest,
    check_finite_param,
    one_hot,
)
from laser_serve.selector.context import as_contexts, check_dim, sparse_projection

# Measured on a 2-core AMD EPYC (OpenBLAS): K dsymv calls beat one flat gemv from ~500 dims.
SYM_MIN_DIM = 512
KERNELS = ("auto", "full", "sym")


class RidgePolicy(SeededPolicy):
    """Per-arm ridge regression that LinUCB and LinTS share; see the module docstring.

    ``alpha``: exploration scale (LinUCB's bonus weight, LinTS's posterior scale); ``lam``:
    ridge λ; ``normalize``: scale each (projected) context to unit L2 norm; ``project_to``:
    random projection to that many dims (None: off); ``seed``: seeds the projection and the
    random choices; ``reward_norm``/``window``: see RewardNormalizer; ``kernel``: "auto",
    "full" or "sym" (performance only, not saved with the state).
    Memory: K·d′²·8 bytes (A⁻¹), e.g. 1 GiB for K=8, d′=4096.

    Arms never updated are tried first (see ``_try_untried``); after that a subclass's
    ``_decide_tried`` chooses from every arm's mean θ_kᵀx and width α·sqrt(xᵀA_k⁻¹x).
    """

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        alpha: float = 0.1,
        lam: float = 1.0,
        normalize: bool = False,
        project_to: int | None = None,
        seed: int = 0,
        reward_norm: str = "none",
        window: int = 1000,
        *,
        kernel: str = "auto",
    ) -> None:
        super().__init__(arms, dim, seed=seed, reward_norm=reward_norm, window=window)
        self.alpha = check_finite_param(alpha, "alpha")
        self.lam = check_finite_param(lam, "lam", positive=True)
        if not isinstance(normalize, bool | np.bool_):
            raise ValueError(f"normalize must be a bool, got {normalize!r}")
        self.normalize = bool(normalize)
        if project_to is None:
            self.project_to: int | None = None
            self._proj: csr_array | None = None
        else:
            self.project_to = check_dim(project_to, "project_to")
            self._proj = csr_array(sparse_projection(self.dim, self.project_to, self.seed))
        self.context_dim = self.project_to or self.dim
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
        self.kernel = kernel
        self._sym = kernel == "sym" or (kernel == "auto" and self.context_dim >= SYM_MIN_DIM)
        k, d = len(self.arms), self.context_dim
        self._a_inv = np.empty((k, d, d))
        self._a_inv[:] = np.eye(d) / self.lam
        self._b = np.zeros((k, d))
        self._theta = np.zeros((k, d))

    # --- maths ----------------------------------------------------------------------------

    def _features(self, X: np.ndarray) -> np.ndarray:
        """Contexts as the bandit sees them: projected, then (optionally) unit-normalized."""
        if self._proj is not None:
            # Row by row: a batch projects bit-identically to single calls (each costs
            # microseconds); the batch still makes one pass over A⁻¹ below.
            X32, X = X.astype(np.float32), np.empty((X.shape[0], self._proj.shape[0]))
            for i, row in enumerate(X32):
                X[i] = self._proj @ row
        if self.normalize:
            norms = np.sqrt(np.einsum("ij,ij->i", X, X))[:, None]
            X = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)  # zero stays zero
        return np.ascontiguousarray(X)

    def _quad(self, Z: np.ndarray) -> np.ndarray:
        """xᵀA_k⁻¹x for each row of Z and each arm: (B, K), one pass over A⁻¹."""
        b, (k, d) = Z.shape[0], self._b.shape
        if b == 0:
            return np.zeros((0, k))
        if self._sym:
            q = np.empty((b, k))
            for j in range(k):
                F = self._a_inv[j].T  # Fortran view: BLAS reads it without a copy
                if b == 1:
                    q[0, j] = ddot(dsymv(1.0, F, Z[0]), Z[0])
                else:
                    q[:, j] = np.einsum("ib,bi->b", dsymm(1.0, F, Z.T), Z)
        else:
            Y = _rows_dot(self._a_inv.reshape(k * d, d), Z)  # (B, K·d): one gemv/gemm
            if b == 1:
                q = _rows_dot(Y.reshape(k, d), Z)
            else:
                q = np.einsum("bkd,bd->bk", Y.reshape(b, k, d), Z)
        return np.maximum(q, 0.0)  # rounding can make a tiny quadratic form negative

    def _mean_width(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """θ_kᵀz and α·sqrt(zᵀA_k⁻¹z) for each row of Z and each arm: two (B, K) arrays."""
        return _rows_dot(self._theta, Z), self.alpha * np.sqrt(self._quad(Z))

    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if (self._pulls == 0).any():
            return self._try_untried(X.shape[0])
        return self._decide_tried(*self._mean_width(self._features(X)))

    @abstractmethod
    def _decide_tried(self, mean: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Picks and p(·|x) ((B,), (B, K)) from every arm's mean and width, once every arm
        has been updated; called under the lock."""

    def _floor(self, greedy: np.ndarray) -> np.ndarray:
        """p(·|x) given the (B, K) probabilities of the greedy step: no floor here."""
        return greedy

    def _try_untried(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        # The zero prior scores every arm alike, so the first arm to earn a positive reward
        # would then win every comparison its small α-bonus rival cannot close (it took all
        # 184 selections of a soak). As UCB1 does, try each arm first: the greedy step is
        # the untried arm selected least so far, lowest index on ties, row by row as single
        # calls would (a pick made by LinUCB's exploration floor counts too).
        k = len(self.arms)
        counts = np.where(self._pulls == 0, self._selections, np.inf)
        picks, probs = np.empty(rows, dtype=np.int64), np.empty((rows, k))
        for i in range(rows):
            probs[i] = self._floor(one_hot(np.array([np.argmin(counts)]), k))[0]
            picks[i] = self._sample(probs[i : i + 1])[0]
            counts[picks[i]] += 1
        return picks, probs

    def _plan(self, k: int, x: np.ndarray, reward: float, weight: float) -> Callable[[], None]:
        # Weight w: the same step with √w·z and √w·r, so A ← A + w·zzᵀ and b ← b + w·r·z.
        z = self._features(x[None, :])[0]
        if weight != 1.0:
            z, reward = np.sqrt(weight) * z, np.sqrt(weight) * reward
        F = self._a_inv[k].T
        u = dsymv(1.0, F, z) if self._sym else dgemv(1.0, F, z)  # A⁻¹ z (A⁻¹ = A⁻ᵀ)
        den = 1.0 + ddot(u, z)
        # |u_i u_j| / den <= uᵀu / den, and A⁻¹'s entries are at most 1/λ: a finite bound
        # keeps the new A⁻¹ finite. Nothing has changed yet if this refuses.
        with np.errstate(over="ignore", invalid="ignore"):
            theta = self._theta[k] + ((reward - ddot(self._theta[k], z)) / den) * u
            b = self._b[k] + reward * z
            finite = all(
                np.isfinite(v) for v in (den, ddot(u, u) / den, ddot(theta, theta), ddot(b, b))
            )
        if not finite:
            raise ValueError(
                f"reward {reward!r} refused: arm {self.arms[k]!r}'s A⁻¹, b or θ would "
                "become non-finite"
            )

        def apply() -> None:
            # Sherman–Morrison in place: A⁻¹ ← A⁻¹ − u uᵀ / (1 + xᵀA⁻¹x)
            if self._sym:
                _inplace(F, dsyr(-1.0 / den, u, a=F, overwrite_a=1))
            else:
                _inplace(F, dger(-1.0 / den, u, u, a=F, overwrite_a=1))
            self._theta[k] = theta
            self._b[k] = b

        return apply

    # --- public extras --------------------------------------------------------------------

    def select(self, x: np.ndarray) -> int:
        """The chosen arm index for one context (``choose(x)[0]``)."""
        return self.choose(x)[0]

    def select_batch(self, X: np.ndarray) -> np.ndarray:
        """Chosen arm indices (int64, shape (B,)) for the rows of ``X``."""
        Xv = as_contexts(X, self.dim)
        with self._lock:
            picks, _ = self._decide(Xv)
            self._selections += np.bincount(picks, minlength=len(self.arms))
        return picks

    def width(self, x: np.ndarray) -> np.ndarray:
        """Exploration bonus α·sqrt(xᵀA_k⁻¹x): (K,) for one context, (B, K) for a batch."""
        X, single = self._any_contexts(x)
        with self._lock:
            w = self.alpha * np.sqrt(self._quad(self._features(X)))
        return w[0] if single else w

    def _any_contexts(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        arr = np.asarray(x)
        single = arr.ndim == 1
        return as_contexts(arr[None, :] if single else arr, self.dim), single

    @property
    def theta(self) -> np.ndarray:
        """Copy of θ, shape (K, d′)."""
        with self._lock:
            return self._theta.copy()

    @property
    def a_inv(self) -> np.ndarray:
        """Copy of A⁻¹ (both triangles), shape (K, d′, d′)."""
        with self._lock:
            return _symmetrized(self._a_inv) if self._sym else self._a_inv.copy()

    @property
    def projection(self) -> np.ndarray | None:
        """Copy of the (d′, d) float32 projection matrix, or None."""
        return None if self._proj is None else self._proj.toarray()

    def params(self) -> dict[str, float | int | str]:
        return {
            **super().params(),
            "alpha": self.alpha,
            "lam": self.lam,
            "normalize": int(self.normalize),
            "project_to": self.project_to if self.project_to is not None else "none",
            "context_dim": self.context_dim,
            "kernel": "sym" if self._sym else "full",
        }

    # --- state ----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        proj = (
            None if self.project_to is None else {"project_to": self.project_to, "seed": self.seed}
        )
        return {
            **super()._config(),
            "projection": proj,
            "lam": self.lam,
            "normalize": self.normalize,
        }

    def _array_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        k, d = len(self.arms), self.context_dim
        shapes = {
            **super()._array_shapes(),
            "a_inv": ((k, d, d), "f8"),
            "b": ((k, d), "f8"),
            "theta": ((k, d), "f8"),
        }
        if self._proj is not None:
            shapes["projection"] = ((d, self.dim), "f4")
        return shapes

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            **super()._arrays(),
            "a_inv": _symmetrized(self._a_inv) if self._sym else self._a_inv.copy(),
            "b": self._b.copy(),
            "theta": self._theta.copy(),
        }
        if self._proj is not None:
            arrays["projection"] = self._proj.toarray()
        return arrays

    def _upgrade(self, arrays: dict[str, Any]) -> dict[str, Any]:
        arrays.pop("gram", None)  # Σxxᵀ, saved before merge was removed
        return super()._upgrade(arrays)

    def _install(self, arrays: dict[str, np.ndarray], parsed: dict[str, Any]) -> None:
        super()._install(arrays, parsed)
        self._a_inv = np.ascontiguousarray(arrays["a_inv"])
        self._b = np.ascontiguousarray(arrays["b"])
        self._theta = np.ascontiguousarray(arrays["theta"])
        if self._proj is not None:
            # Same project_to and seed were checked; the saved matrix is the one the state
            # learned with, so it wins should this numpy draw a different one.
            self._proj = csr_array(arrays["projection"])


class LinUCB(RidgePolicy):
    """Disjoint-arm LinUCB (the module docstring has the maths), with an optional exploration
    floor that makes its probabilities useful to off-policy evaluation.

    The greedy step takes the arm of highest score_k(x) = θ_kᵀx + α·sqrt(xᵀA_k⁻¹x) (ties
    within 1e-12 relative to the lowest index) or, with ``band`` > 0, any arm whose score is
    within ``band`` of the best, uniformly. With ``epsilon`` > 0 a uniform arm is taken
    instead with probability ε, at every decision (untried-first ones too). So exactly
    p(k|x) = ε/K + (1 − ε)·[k ∈ T(x)]/|T(x)|, T(x) the arms of the greedy step, and the arm
    is drawn from that p. Other arguments: RidgePolicy's.

    >>> p = LinUCB(["a", "b", "c"], dim=2, epsilon=0.3)
    >>> for arm in range(3):
    ...     _ = p.update(arm, [1.0, 0.0], float(arm == 1))
    >>> p.decide([1.0, 0.0]).probs.round(3).tolist()
    [0.1, 0.8, 0.1]
    >>> p.name
    'linucb:epsilon=0.3'
    """

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        *args: Any,
        epsilon: float = 0.0,
        band: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(arms, dim, *args, **kwargs)
        self.epsilon = check_finite_param(epsilon, "epsilon")
        if self.epsilon > 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.band = check_finite_param(band, "band")
        floor = [f"{key}={v!r}" for key, v in (("epsilon", self.epsilon), ("band", self.band)) if v]
        self.name = "linucb:" + ",".join(floor) if floor else "linucb"

    @property
    def _state_policy(self) -> str:
        return "linucb"  # the floor is not state: a plain LinUCB state loads, and back

    def _scores(self, Z: np.ndarray) -> np.ndarray:
        mean, width = self._mean_width(Z)
        return mean + width

    def _decide_tried(self, mean: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = mean + width
        if self.band:
            best = scores >= scores.max(axis=1, keepdims=True) - self.band
            greedy = best / best.sum(axis=1, keepdims=True)
        else:
            greedy = one_hot(argmax_lowest(scores), len(self.arms))
        probs = self._floor(greedy)
        return self._sample(probs), probs

    def _floor(self, greedy: np.ndarray) -> np.ndarray:
        # p(k|x) = ε/K + (1 − ε)·greedy_k
        return self.epsilon / len(self.arms) + (1.0 - self.epsilon) * greedy

    def ucb(self, x: np.ndarray) -> np.ndarray:
        """UCB scores: (K,) for one context, (B, K) for a batch."""
        X, single = self._any_contexts(x)
        with self._lock:
            s = self._scores(self._features(X))
        return s[0] if single else s

    def params(self) -> dict[str, float | int | str]:
        return {**super().params(), "epsilon": self.epsilon, "band": self.band}


def _rows_dot(m: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Z @ m.T as a C-contiguous (B, rows) array, for C-contiguous m and Z, via scipy's BLAS
    (the transposes are Fortran views, so nothing is copied)."""
    if Z.shape[0] == 1:
        return dgemv(1.0, m.T, Z[0], trans=1)[None, :]
    if Z.shape[0] == 0:
        return np.zeros((0, m.shape[0]))
    return dgemm(1.0, m.T, Z.T, trans_a=1).T


def _inplace(target: np.ndarray, result: np.ndarray) -> None:
    # scipy updates in place for a Fortran-contiguous float64 array; copy back otherwise.
    if result.ctypes.data != target.ctypes.data:
        target[...] = result


def _symmetrized(m: np.ndarray) -> np.ndarray:
    """Full symmetric copies from the C-lower triangles of a (K, d, d) stack (per arm, to
    keep temporaries at d×d)."""
    out = np.empty_like(m)
    for j in range(m.shape[0]):
        low = np.tril(m[j])
        out[j] = low + np.tril(low, -1).T
    return out
