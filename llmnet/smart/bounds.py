"""Confidence bounds for a Bernoulli mean: fixed-n Clopper-Pearson and an anytime-valid
confidence sequence behind one interface.

SMART (Jo & Trummer 2024, arXiv 2403.13835) decides whether a cheaper model agrees with
the reference on at least a share ``1 - delta`` of items from ``s`` agreements in ``n``
profiled items. Two bounds are offered:

``ClopperPearson``
    The paper's two-sided exact interval at confidence ``gamma`` (``a = 1 - gamma``):
    ``L = Beta^-1(a/2; s, n-s+1)``, ``U = Beta^-1(1-a/2; s+1, n-s)``, with ``L = 0`` at
    ``s = 0`` and ``U = 1`` at ``s = n``. Valid at one fixed ``n``; SMART looks at it every
    10 items, which is not a valid sequential test.

``BettingMixture``
    An anytime-valid confidence sequence (Waudby-Smith & Ramdas 2023, "Estimating means
    of bounded random variables by betting", JRSS-B; Howard et al. 2021 for mixtures).
    For a candidate mean ``p0`` and a bet ``lam`` in ``[0, 1)``, the wealth
    ``K_n(p0, lam) = prod_i (1 + lam (X_i - p0))`` is a nonnegative supermartingale with
    ``K_0 = 1`` whenever the true mean is ``p <= p0`` (each factor has mean
    ``1 + lam (p - p0) <= 1`` and stays positive because ``lam < 1``). A fixed mixture
    ``M_n(p0) = mean_j K_n(p0, lam_j)`` over a log-spaced grid of bets is one too, so by
    Ville's inequality ``P(exists n: M_n(p) >= 1/e) <= e``. The lower bound is
    ``L_n = inf {p0 : M_n(p0) < 1/e}``: the truth lies below ``L_n`` at some time with
    probability at most ``e``, however often and whenever one looks, including at a
    data-dependent stopping time. Because the bets are fixed (not predictable plug-ins),
    ``K_n = (1 + lam (1 - p0))^s (1 - lam p0)^(n - s)`` depends on ``(s, n)`` only and
    decreases in ``p0``, so ``{p0 : M_n(p0) >= 1/e}`` is an interval ``[0, L_n)`` found by
    bisection, and ``L_n`` increases in ``s``. The upper bound is the same construction
    applied to ``1 - X``. The growth rate of the best bet equals KL(p || p0) (the
    likelihood-ratio bet ``lam* = (p - p0) / (p0 (1 - p0))``); for SMART's thresholds
    ``1 - delta`` in [0.8, 0.98] and margins up to ``delta``, ``lam*`` lies in about
    [0.05, 1], hence the grid. Price of validity: near the threshold it needs about 2.5x
    the items Clopper-Pearson needs at the same one-sided error.

Both bounds are one-sided with an explicit error ``e`` (probability that the bound is on
the wrong side of the truth); ``interval(s, n, confidence)`` puts ``(1 - confidence)/2``
on each side as the paper does. ``lower_at_least`` is the exact, cheap test
``L(s, n) >= p0`` that decision tables and SMART's early termination are built from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache
from typing import ClassVar

import numpy as np
from scipy import special

from llmnet.errors import LlmnetError

__all__ = [
    "BinomialBound",
    "ClopperPearson",
    "BettingMixture",
    "DecisionTable",
    "BOUNDS",
    "get_bound",
    "clopper_pearson",
    "decision_table",
    "reach_probability",
]

_BISECT_STEPS = 34  # bound to within 2^-34 ~ 6e-11


def _as_counts(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if np.any(n < 0) or np.any(s < 0) or np.any(s > n):
        raise LlmnetError(f"need 0 <= successes <= trials, got successes={successes!r}, trials={trials!r}")
    return np.broadcast_arrays(s, n)


def _check_error(error: float) -> float:
    if not 0.0 < error < 1.0:
        raise LlmnetError(f"error probability must lie in (0, 1), got {error!r}")
    return float(error)


class BinomialBound(ABC):
    """One-sided confidence bounds for a Bernoulli mean from ``successes`` in ``trials``.

    Subclasses implement ``lower`` and the exact comparison ``lower_at_least``; the upper
    bound follows by symmetry (``U(s, n) = 1 - L(n - s, n)``). All methods broadcast over
    numpy arrays.
    """

    name: ClassVar[str]
    anytime: ClassVar[bool]

    @abstractmethod
    def lower(self, successes, trials, error: float) -> np.ndarray:
        """Lower bound ``L`` with ``P(p < L) <= error``."""

    @abstractmethod
    def lower_at_least(self, successes, trials, threshold, error: float) -> np.ndarray:
        """Whether ``lower(successes, trials, error) >= threshold``, computed exactly."""

    def upper(self, successes, trials, error: float) -> np.ndarray:
        """Upper bound ``U`` with ``P(p > U) <= error``."""
        s, n = _as_counts(successes, trials)
        return 1.0 - self.lower(n - s, n, error)

    def interval(self, successes, trials, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided interval, ``(1 - confidence)/2`` on each side (the paper's convention)."""
        if not 0.0 < confidence < 1.0:
            raise LlmnetError(f"confidence must lie in (0, 1), got {confidence!r}")
        side = (1.0 - confidence) / 2.0
        return self.lower(successes, trials, side), self.upper(successes, trials, side)

    def min_successes(self, trials, threshold: float, error: float) -> np.ndarray:
        """Fewest successes ``s`` in ``trials`` with ``lower(s, trials) >= threshold``.

        ``trials + 1`` where no count reaches it. Bisection over ``s`` (the lower bound
        increases in ``s``), vectorised over ``trials``.
        """
        n = np.asarray(trials, dtype=np.int64)
        lo = np.full(n.shape, -1, dtype=np.int64)  # known to fail (s = -1 is a sentinel)
        hi = n + 1  # known to pass (sentinel "impossible")
        while np.any(hi - lo > 1):
            mid = (lo + hi) // 2
            active = hi - lo > 1
            probe = np.where(active, np.clip(mid, 0, n), 0)
            ok = self.lower_at_least(probe, np.where(active, n, 0), threshold, error)
            hi = np.where(active & ok, mid, hi)
            lo = np.where(active & ~ok, mid, lo)
        return hi

    def max_successes_below(self, trials, threshold: float, error: float) -> np.ndarray:
        """Most successes ``s`` in ``trials`` with ``upper(s, trials) < threshold``; -1 if none.

        ``U(s, n) < t`` iff ``L(n - s, n) > 1 - t``; the tie ``L == 1 - t`` is counted as
        crossing, which matters only on a measure-zero set of thresholds.
        """
        n = np.asarray(trials, dtype=np.int64)
        return n - self.min_successes(n, 1.0 - threshold, error)


class ClopperPearson(BinomialBound):
    """Exact binomial bounds (Clopper & Pearson 1934), valid at one fixed ``n``.

    ``L = Beta^-1(e; s, n - s + 1)`` (0 at ``s = 0``), which with ``e = a/2`` is the
    paper's two-sided lower end.
    """

    name = "clopper-pearson"
    anytime = False

    def lower(self, successes, trials, error: float) -> np.ndarray:
        s, n = _as_counts(successes, trials)
        e = _check_error(error)
        safe = s > 0
        value = special.betaincinv(np.where(safe, s, 1.0), np.where(safe, n - s + 1.0, 1.0), e)
        return np.where(safe, value, 0.0)

    def lower_at_least(self, successes, trials, threshold, error: float) -> np.ndarray:
        # Beta^-1(e; s, n-s+1) >= t  <=>  I_t(s, n-s+1) = P(Bin(n, t) >= s) <= e.
        s, n = _as_counts(successes, trials)
        e = _check_error(error)
        t = np.broadcast_to(np.asarray(threshold, dtype=float), s.shape)
        safe = s > 0
        tail = special.betainc(np.where(safe, s, 1.0), np.where(safe, n - s + 1.0, 1.0), np.clip(t, 0.0, 1.0))
        return np.where(t <= 0.0, True, np.where(safe, (tail <= e) & (t < 1.0), False))


class BettingMixture(BinomialBound):
    """Anytime-valid bounds from a fixed mixture of betting martingales (module docstring).

    ``bets``: the grid ``lam_j`` in ``(0, 1)``, equally weighted; log-spaced over
    [0.05, 0.99] by default.
    """

    name = "anytime"
    anytime = True

    def __init__(self, bets: np.ndarray | None = None):
        grid = np.geomspace(0.05, 0.99, 12) if bets is None else np.asarray(bets, dtype=float)
        if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0) or np.any(grid >= 1):
            raise LlmnetError("bets must be a non-empty 1-d grid inside (0, 1)")
        self.bets = grid

    def _log_wealth(self, s: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
        lam = self.bets.reshape((-1,) + (1,) * s.ndim)
        terms = s * np.log1p(lam * (1.0 - p)) + (n - s) * np.log1p(-lam * p)
        top = terms.max(axis=0)
        return top + np.log(np.exp(terms - top).mean(axis=0))

    def log_wealth(self, successes, trials, p0) -> np.ndarray:
        """``log M_n(p0)``, the log of the mixture wealth betting that the mean exceeds ``p0``."""
        s, n = _as_counts(successes, trials)
        p = np.broadcast_to(np.clip(np.asarray(p0, dtype=float), 0.0, 1.0), s.shape)
        return self._log_wealth(s, n, p)

    def lower_at_least(self, successes, trials, threshold, error: float) -> np.ndarray:
        s, n = _as_counts(successes, trials)
        e = _check_error(error)
        t = np.broadcast_to(np.asarray(threshold, dtype=float), s.shape)
        reached = self._log_wealth(s, n, np.clip(t, 0.0, 1.0)) >= np.log(1.0 / e)
        return np.where(t <= 0.0, True, reached & (t < 1.0))

    def lower(self, successes, trials, error: float) -> np.ndarray:
        s, n = _as_counts(successes, trials)
        level = np.log(1.0 / _check_error(error))
        lo = np.zeros(s.shape)
        hi = np.where(n > 0, s / np.maximum(n, 1.0), 0.0)  # M_n(p0) <= 1 for p0 >= s/n
        for _ in range(_BISECT_STEPS):
            mid = (lo + hi) / 2.0
            rejected = self._log_wealth(s, n, mid) >= level
            lo = np.where(rejected, mid, lo)
            hi = np.where(rejected, hi, mid)
        return lo


BOUNDS: dict[str, BinomialBound] = {b.name: b for b in (ClopperPearson(), BettingMixture())}


def get_bound(name: str | BinomialBound) -> BinomialBound:
    """The bound called ``name`` (``"clopper-pearson"`` or ``"anytime"``)."""
    if isinstance(name, BinomialBound):
        return name
    try:
        return BOUNDS[name]
    except KeyError:
        raise LlmnetError(f"unknown bound {name!r} (known: {', '.join(BOUNDS)})") from None


def clopper_pearson(successes, trials, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The paper's two-sided Clopper-Pearson interval at ``confidence`` (= gamma)."""
    return BOUNDS["clopper-pearson"].interval(successes, trials, confidence)


class DecisionTable:
    """Per sample size ``n``, the agreement counts at which SMART's two decisions fire.

    ``satisfied_from(n)``: fewest agreements with ``L >= threshold`` (``n + 1``: never);
    ``invalid_upto(n)``: most agreements with ``U < threshold`` (-1: never). Entries are
    computed on first use, a block of ``_BLOCK`` sample sizes at a time, and kept; one
    table per configuration is shared through ``decision_table``.
    """

    _UNSET = -2
    _BLOCK = 512

    def __init__(self, bound: str, threshold: float, lower_error: float, upper_error: float, max_trials: int):
        self.bound = get_bound(bound)
        self.threshold = float(threshold)
        self.lower_error = _check_error(lower_error)
        self.upper_error = _check_error(upper_error)
        self.max_trials = int(max_trials)
        self._sat = np.full(self.max_trials + 1, self._UNSET, dtype=np.int64)
        self._inv = np.full(self.max_trials + 1, self._UNSET, dtype=np.int64)

    def _fill(self, trials) -> np.ndarray:
        n = np.atleast_1d(np.asarray(trials, dtype=np.int64))
        if np.any(n < 0) or np.any(n > self.max_trials):
            raise LlmnetError(f"trials must lie in 0..{self.max_trials}")
        blocks = np.unique(n[self._sat[n] == self._UNSET] // self._BLOCK)
        if blocks.size:
            todo = (blocks[:, None] * self._BLOCK + np.arange(self._BLOCK)).ravel()
            todo = todo[todo <= self.max_trials]
            self._sat[todo] = self.bound.min_successes(todo, self.threshold, self.lower_error)
            self._inv[todo] = self.bound.max_successes_below(todo, self.threshold, self.upper_error)
        return n

    def satisfied_from(self, trials) -> np.ndarray:
        return self._sat[self._fill(trials)]

    def invalid_upto(self, trials) -> np.ndarray:
        return self._inv[self._fill(trials)]

    def satisfied(self, successes: int, trials: int) -> bool:
        if self._sat[trials] == self._UNSET:
            self._fill(trials)
        return bool(successes >= self._sat[trials])

    def invalid(self, successes: int, trials: int) -> bool:
        if self._inv[trials] == self._UNSET:
            self._fill(trials)
        return bool(successes <= self._inv[trials])


@lru_cache(maxsize=256)
def decision_table(
    bound: str, threshold: float, lower_error: float, upper_error: float, max_trials: int
) -> DecisionTable:
    """The shared (lazily filled) decision table of one configuration."""
    return DecisionTable(bound, threshold, lower_error, upper_error, max_trials)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def reach_probability(successes: int, trials: int, extra: np.ndarray, table: DecisionTable) -> np.ndarray:
    """Probability that the lower bound reaches the table's threshold after ``extra`` items.

    SMART's early termination (Jo & Trummer, Sec. on expected cost): with ``t(k)`` the
    fewest further agreements that make ``L(s + x, n + k) >= threshold``,
    ``P(k) = E_p[Pr(Bin(k, p) >= t(k))]`` with ``p ~ Normal(p_hat, p_hat(1-p_hat)/n)``
    truncated to [0, 1] (renormalised; the authors' code integrates the untruncated
    density over [0, 1], which differs by the mass outside it). Gauss-Legendre over
    ``p_hat +- 8 sd``; a point mass when ``p_hat`` is 0 or 1.
    """
    k = np.asarray(extra, dtype=np.int64)
    if trials <= 0:
        raise LlmnetError("reach_probability needs at least one observed item")
    need = table.satisfied_from(trials + k) - successes
    p_hat = successes / trials
    sd = np.sqrt(p_hat * (1.0 - p_hat) / trials)
    if sd == 0.0:
        p = np.array([p_hat])
        w = np.array([1.0])
    else:
        lo, hi = max(0.0, p_hat - 8 * sd), min(1.0, p_hat + 8 * sd)
        p = (hi - lo) / 2.0 * _NODES + (hi + lo) / 2.0
        w = _WEIGHTS * np.exp(-0.5 * ((p - p_hat) / sd) ** 2)
        w = w / w.sum()
    tail = special.bdtrc(np.maximum(need - 1, 0)[:, None], k[:, None], p[None, :])
    tail = np.where(need[:, None] <= 0, 1.0, np.where(need[:, None] > k[:, None], 0.0, tail))
    return tail @ w
