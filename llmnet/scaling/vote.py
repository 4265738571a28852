"""Exact accuracy of Vote and Filter-Vote from a pool of cached generations.

Chen et al. 2024, "Are More LLM Calls All You Need?" (arXiv 2403.02419) estimate the
accuracy of a K-call Vote system by resampling K generations from a query's cache of about
400 and taking the plurality answer, 1000 times per K. This module computes the same
quantity exactly: the expected accuracy when K answers are drawn i.i.d. *with replacement*
from the pool's empirical answer distribution (K may exceed the pool size), with ties
broken uniformly at random.

The exact computation (its mathematics and error bound) lives in :mod:`llmnet.scaling.vote_exact`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from llmnet.scaling.vote_exact import MAX_EXACT_K, exact_many

METHODS = ("vote", "filter_vote")


@dataclass(frozen=True)
class Pool:
    """The M cached generations of one query.

    ``answers`` are the extracted answers (``None`` = unparseable: an answer class that is
    never correct); ``verdicts`` the judge's verdict on each generation (Filter-Vote).
    """

    query_id: str
    answers: tuple[str | None, ...]
    correct: str
    verdicts: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", tuple(self.answers))
        if not self.answers:
            raise ValueError(f"pool {self.query_id!r}: answers is empty (need >= 1 generation)")
        if self.verdicts is not None:
            object.__setattr__(self, "verdicts", tuple(bool(v) for v in self.verdicts))
            if len(self.verdicts) != len(self.answers):
                raise ValueError(
                    f"pool {self.query_id!r}: {len(self.verdicts)} verdicts for "
                    f"{len(self.answers)} answers (need one verdict per generation)"
                )


@dataclass(frozen=True)
class Difficulty:
    """Item difficulty ``d = max_{a != y*} P(a) - P(y*)`` (Chen et al., Sec. 3).

    ``d`` is computed on the pool's empirical distribution (after filtering for
    Filter-Vote). ``[lo, hi]`` is an equal-tailed credible interval under a Dirichlet
    posterior with Jeffreys prior 1/2 on ``y*``, on every observed wrong answer and on one
    extra bucket for answers not seen in the pool; ``p_easy`` is the posterior P(d < 0).
    """

    d: float
    lo: float
    hi: float
    confidence: float
    p_easy: float
    easy: bool
    method: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_ks(ks) -> np.ndarray:
    """``ks`` as a 1-D int array of call budgets K >= 1, or a clear ValueError."""
    arr = np.atleast_1d(np.asarray(ks))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("ks must be a non-empty 1-D sequence of call budgets")
    if not np.issubdtype(arr.dtype, np.number) or np.any(~np.isfinite(arr)):
        raise ValueError(f"ks must be finite numbers, got {arr!r}")
    out = arr.astype(np.int64)
    if np.any(out != arr) or np.any(out < 1):
        raise ValueError(f"ks must be integers >= 1, got {arr.tolist()!r}")
    return out


def pool_counts(pool: Pool, method: str = "vote") -> np.ndarray:
    """Answer counts of a pool, true answer first, wrong classes by decreasing count.

    Vote: a 1-D array. Filter-Vote: a ``(2, C)`` array, row 0 the generations the judge
    kept (verdict True), row 1 those it rejected.
    """
    _check_method(method)
    if method == "vote":
        tally = Counter(pool.answers)
        wrong = sorted((c for a, c in tally.items() if a != pool.correct), reverse=True)
        return np.array([tally.get(pool.correct, 0), *wrong], dtype=float)
    if pool.verdicts is None:
        raise ValueError(f"pool {pool.query_id!r}: filter_vote needs verdicts, got None")
    kept = Counter(a for a, v in zip(pool.answers, pool.verdicts) if v)
    dropped = Counter(a for a, v in zip(pool.answers, pool.verdicts) if not v)
    wrong = sorted(
        ((kept.get(a, 0), dropped.get(a, 0)) for a in set(pool.answers) if a != pool.correct),
        reverse=True,
    )
    first = (kept.get(pool.correct, 0), dropped.get(pool.correct, 0))
    return np.array([first, *wrong], dtype=float).T.reshape(2, -1)


def _as_counts(pool_or_counts, method: str) -> np.ndarray:
    if isinstance(pool_or_counts, Pool):
        return pool_counts(pool_or_counts, method)
    counts = np.asarray(pool_or_counts, dtype=float)
    want = 1 if method == "vote" else 2
    if counts.ndim != want or (want == 2 and counts.shape[0] != 2) or counts.shape[-1] < 1:
        shape = "(C,)" if want == 1 else "(2, C) [kept; rejected]"
        raise ValueError(f"{method} counts must have shape {shape}, got {counts.shape}")
    if np.any(~np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError("counts must be finite, non-negative and not all zero")
    return counts


def vote_accuracy(pool_or_counts, ks, method: str = "vote") -> np.ndarray:
    """Exact expected accuracy of Vote / Filter-Vote at every call budget K in ``ks``.

    ``pool_or_counts`` is a :class:`Pool` or its counts (true answer first): a 1-D array
    for Vote, a ``(2, C)`` array ``[kept; rejected]`` for Filter-Vote. K answers are drawn
    i.i.d. with replacement from the pool's empirical distribution, plurality wins, ties
    are broken uniformly at random; see the module docstring for the method and
    :func:`_filter_vote_batch` for the Filter-Vote budget (odd K, K = 1).
    """
    method = _check_method(method)
    kk = check_ks(ks)
    uniq, inv = np.unique(kk, return_inverse=True)
    return exact_many([_as_counts(pool_or_counts, method)], uniq, method)[0, inv]


def _canonical_key(counts: np.ndarray, method: str) -> tuple:
    probs = counts / counts.sum()
    if method == "vote":
        return (probs[0], *sorted(probs[1:][probs[1:] > 0], reverse=True))
    cols = sorted((tuple(c) for c in probs[:, 1:].T if c.sum() > 0), reverse=True)
    return (tuple(probs[:, 0]), *cols)


def vote_accuracy_pools(pools, ks, method: str = "vote") -> np.ndarray:
    """:func:`vote_accuracy` for many pools (or counts): an ``(n_pools, len(ks))`` array.

    Pools with the same answer distribution (up to relabelling the wrong answers) are
    computed once, and all distinct ones go through the batched engine together.
    """
    method = _check_method(method)
    kk = check_ks(ks)
    if len(pools) == 0:
        return np.empty((0, kk.size))
    uniq, inv = np.unique(kk, return_inverse=True)
    counts = [_as_counts(pool, method) for pool in pools]
    index: dict[tuple, int] = {}
    which = np.array([index.setdefault(_canonical_key(c, method), len(index)) for c in counts])
    distinct = [None] * len(index)
    for c, w in zip(counts, which):
        distinct[w] = c
    return exact_many(distinct, uniq, method)[which][:, inv]


def _labels(pool_or_counts, method: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-generation class labels (0 = true answer) and verdicts, for resampling."""
    if isinstance(pool_or_counts, Pool):
        pool = pool_or_counts
        names = {pool.correct: 0}
        for a in pool.answers:
            names.setdefault(a, len(names))
        labels = np.array([names[a] for a in pool.answers])
        if method == "vote":
            return labels, None
        if pool.verdicts is None:
            raise ValueError(f"pool {pool.query_id!r}: filter_vote needs verdicts, got None")
        return labels, np.array(pool.verdicts)
    counts = _as_counts(pool_or_counts, method)
    if np.any(counts != np.round(counts)):
        raise ValueError("Monte Carlo resampling needs integer counts")
    counts = counts.astype(int)
    if method == "vote":
        return np.repeat(np.arange(counts.size), counts), None
    cls = np.arange(counts.shape[1])
    labels = np.concatenate([np.repeat(cls, counts[0]), np.repeat(cls, counts[1])])
    verdicts = np.repeat([True, False], counts.sum(axis=1))
    return labels, verdicts


def _correct_wins(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per trial: does class 0 win the plurality, ties broken by a uniform draw?"""
    top = counts.max(axis=1)
    at_top = counts == top[:, None]
    ties = at_top.sum(axis=1)
    return at_top[:, 0] & (top > 0) & (rng.random(counts.shape[0]) * ties < 1.0)


def vote_accuracy_mc(pool, ks, trials: int = 1000, rng=None, method: str = "vote") -> np.ndarray:
    """The authors' Monte-Carlo estimate (Chen et al.'s released analysis code).

    For each K and each of ``trials`` trials, resample K generations (Filter-Vote: K // 2
    generations with their verdicts; K = 1: one unjudged generation) from the pool with
    replacement and record whether the plurality answer is correct. Ties are broken by a
    uniform draw (the authors' ``Counter`` kept the first answer seen, a small bias; their
    Filter-Vote breaks ties alphabetically and returns the alphabetically first answer when
    every one is rejected -- llmnet keeps all answers then, as the paper's text says).
    Vectorised with numpy; the faithful baseline of :func:`vote_accuracy`.
    """
    method = _check_method(method)
    kk = check_ks(ks)
    if int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    rng = np.random.default_rng(rng)
    labels, verdicts = _labels(pool, method)
    n_cls = int(labels.max()) + 1
    rows = np.arange(trials)[:, None] * n_cls
    out = np.empty(kk.size)
    for i, k in enumerate(kk):
        g = int(k) if method == "vote" or k == 1 else int(k) // 2
        idx = rng.integers(0, labels.size, size=(trials, g))
        flat = (labels[idx] + rows).ravel()
        counts = np.bincount(flat, minlength=trials * n_cls).reshape(trials, n_cls)
        if method == "filter_vote" and k > 1:
            kept = np.bincount(flat, weights=verdicts[idx].ravel(), minlength=trials * n_cls)
            kept = kept.reshape(trials, n_cls)
            counts = np.where(kept.sum(axis=1, keepdims=True) > 0, kept, counts)
        out[i] = _correct_wins(counts, rng).mean()
    return out


def vote_counts(pool_or_counts, method: str = "vote") -> np.ndarray:
    """The counts the plurality is taken over, true answer first: every generation for
    Vote, the kept ones for Filter-Vote (all of them if the judge kept none)."""
    counts = _as_counts(pool_or_counts, _check_method(method))
    if method == "filter_vote":
        counts = counts[0] if counts[0].sum() > 0 else counts.sum(axis=0)
    return counts


def difficulty(pool, confidence: float = 0.95, method: str = "vote", draws: int = 4000,
               seed: int = 0) -> Difficulty:
    """Item difficulty ``d(x) = max_{a != y*} P(a) - P(y*)`` (Chen et al.; ``d_F`` on the
    post-filter distribution for Filter-Vote, :func:`vote_counts`). Easy iff ``d < 0``.
    The interval is described in :class:`Difficulty` (``draws`` posterior draws with a
    fixed ``seed``, so results are reproducible; ``draws=0``: point estimate only, NaN
    interval).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    counts = vote_counts(pool, method)
    probs = counts / counts.sum()
    d = float((probs[1:].max() if probs.size > 1 else 0.0) - probs[0])
    lo = hi = p_easy = math.nan
    if draws > 0:
        alpha = np.append(counts, 0.0) + 0.5  # + one bucket for unseen answers
        post = np.random.default_rng(seed).dirichlet(alpha, size=draws)
        dd = post[:, 1:].max(axis=1) - post[:, 0]
        lo, hi = (float(v) for v in np.quantile(dd, [(1 - confidence) / 2, (1 + confidence) / 2]))
        p_easy = float(np.mean(dd < 0))
    return Difficulty(d=d, lo=lo, hi=hi, confidence=float(confidence), p_easy=p_easy,
                      easy=bool(d < 0), method=method)


def bucket_pools(pools, scheme: str = "easy_hard", n_quantiles: int = 3,
                 method: str = "vote") -> dict[str, list]:
    """Split pools by difficulty ``d`` (:func:`difficulty`).

    ``easy_hard``: ``easy`` (d < 0), ``hard`` (d > 0) and, when any, ``tied`` (d = 0: the
    true answer ties for the mode). ``quantile``: ``q1`` (easiest) .. ``qN`` by quantiles
    of ``d``. Empty buckets are dropped.
    """
    d = np.array([difficulty(p, method=method, draws=0).d for p in pools])
    if scheme == "easy_hard":
        masks = {"easy": d < 0, "hard": d > 0, "tied": d == 0}
    elif scheme == "quantile":
        if int(n_quantiles) != n_quantiles or n_quantiles < 1:
            raise ValueError(f"n_quantiles must be a positive integer, got {n_quantiles!r}")
        edges = np.quantile(d, np.linspace(0, 1, n_quantiles + 1)[1:-1]) if d.size else []
        which = np.searchsorted(edges, d, side="right")
        masks = {f"q{i + 1}": which == i for i in range(n_quantiles)}
    else:
        raise ValueError(f"scheme must be 'easy_hard' or 'quantile', got {scheme!r}")
    return {name: [p for p, m in zip(pools, mask) if m] for name, mask in masks.items()
            if mask.any()}


__all__ = [
    "MAX_EXACT_K", "METHODS", "Difficulty", "Pool", "bucket_pools", "check_ks", "difficulty",
    "pool_counts", "vote_accuracy", "vote_accuracy_mc", "vote_accuracy_pools", "vote_counts",
]
