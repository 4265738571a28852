"""Exact Vote / Filter-Vote accuracy from answer counts: the engine behind :mod:`llmnet.scaling.vote`.

The mathematics
---------------
Let ``q0`` be the share of the pool giving the true answer ``y*`` and ``q_1..q_n`` the
shares of the wrong answer classes (``None``, an unparseable answer, is one more wrong
class). The counts ``X`` of a K-draw are Multinomial(K, q). With ``j = X_0``,
``R = K - j`` and ``q'_i = q_i / (1 - q0)``::

    acc(K) = sum_j Bin(j; K, q0) G(R, j),
    G(R, j) = E[ 1{max_i X'_i <= j} / (1 + #{i: X'_i = j}) ],  X' ~ Multinomial(R, q').

With ``n`` wrong classes, ``G = 0`` when ``R > n j`` and ``G = 1`` when ``j > R``, so::

    acc(K) = 1 - P(X_0 < K / (n + 1)) - sum_{K/(n+1) <= j <= K/2} Bin(j; K, q0) (1 - G(K - j, j))

(the first term is one binomial CDF). The remaining cells are computed exactly:

* ``R/2 < j <= R``: at most one wrong class can reach ``j``, so the events are disjoint
  and ``1 - G = sum_i [P(X'_i > j) + P(X'_i = j) / 2]`` with binomial marginals.
* ``j <= R/2``: coefficient extraction from a generating function. The multinomial
  probability is ``R! prod_i q'_i^x_i / x_i!``, so::

      G(R, j) = R! [z^R] integral_0^1 prod_i ( sum_{x<j} (q'_i z)^x / x! + u (q'_i z)^j / j! ) du

  since ``1 / (1 + t) = integral_0^1 u^t du`` weights a t-way tie. The integrand is a
  polynomial in ``u`` of degree <= n, so Gauss-Legendre with ``floor(n/2) + 1`` nodes is
  exact. All coefficients are positive (no cancellation); ``z`` is rescaled by ``s`` so
  that ``s^R / R!`` stays inside double range (``K <= MAX_EXACT_K``). The same
  polynomial also gives the first kind of cell at that ``j`` for free.

Work is batched across queries and across all K at once (one ``einsum`` per wrong class
and ``j`` multiplies the polynomials of every query). Cells with ``Bin(j; K, q0)`` below
``1e-18``, and kernel terms of a class beyond its Chernoff bound at that level, are
dropped; each such step moves a result by less than ``1e-18``, so the total error is far
below ``1e-13`` on top of floating-point rounding (checked against brute-force enumeration
and closed forms in the tests). Identical answer distributions across queries are
computed once (:func:`vote_accuracy_pools`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import special

MAX_EXACT_K = 2000
_TAIL = 1e-18
_LOG_TAIL = float(np.log(_TAIL))
_CELL_BUDGET = 800_000  # (query, cell) pairs held in memory at once
_USER_BLOCK = 16  # queries per binomial table in region B
_LOG_FACTORIALS = special.gammaln(np.arange(2 * MAX_EXACT_K + 2) + 1.0)


@lru_cache(maxsize=None)
def _gauss01(m: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(m)
    return (x + 1.0) / 2.0, w / 2.0


def _tail_reach(n, q):
    """Bernstein: ``P(|Bin(n, q) - nq| >= t) <= tail`` on each side for the returned ``t``
    (``P(X - nq >= t) <= exp(-t^2 / (2 (nq(1-q) + t/3)))`` solved for ``t``)."""
    big = -_LOG_TAIL
    return big / 3.0 + np.sqrt(big * big / 9.0 + 2.0 * big * n * q * (1.0 - q))


def _upper_cut(q: np.ndarray, n: int) -> np.ndarray:
    """Per entry of ``q``: an ``a`` with ``P(Bin(m, q) > a) <= tail`` for every ``m <= n``,
    from the Chernoff bound ``P(X >= a) <= exp(-n KL(a/n || q))`` (bisection on ``a/n``)."""
    q = np.clip(np.asarray(q, dtype=float), 1e-300, 1.0)
    lo, hi = q.copy(), np.ones_like(q)  # lo: bound too weak, hi: bound holds (or a = n)
    for _ in range(40):
        mid = (lo + hi) / 2
        kl = special.xlogy(mid, mid / q) + special.xlogy(1 - mid, (1 - mid) / np.maximum(
            1 - q, 1e-300))
        holds = n * kl >= -_LOG_TAIL
        lo, hi = np.where(holds, lo, mid), np.where(holds, mid, hi)
    return np.minimum(np.ceil(n * hi), n).astype(np.int64)


def _convolve_rows(src: np.ndarray, margin: int, kern: np.ndarray, out: np.ndarray) -> None:
    """Row-wise products of polynomials, written to ``out`` (its width = coefficients kept).

    ``src`` holds each row's coefficients after ``margin >= taps - 1`` zero columns, so a
    strided sliding-window view needs no copy, and one ``einsum`` serves rows with
    different kernels (no Python loop per row)."""
    rows, width = out.shape
    taps = kern.shape[1]
    start = src[:, margin - taps + 1:]
    step = start.strides
    windows = as_strided(start, (rows, width, taps), (step[0], step[1], step[1]),
                         writeable=False)
    np.einsum("rlx,rx->rl", windows, kern[:, ::-1], out=out)


def _region_b(qn: np.ndarray, cut: np.ndarray, qi: np.ndarray, r: np.ndarray,
              j: np.ndarray) -> np.ndarray:
    """``1 - G(R, j)`` for ``R/2 < j <= R``: at most one wrong class can reach ``j``, so
    ``1 - G = sum_c [P(X_c > j) + P(X_c = j) / 2]``, ``X_c ~ Bin(R, q'_c)``. Cells of many
    queries at once (``qi`` gives each cell's query). Per wrong class and block of queries
    with similar R, one table of binomial probabilities over ``(query, R, y = R - x)`` and
    its cumulative sums over ``y`` serve every cell."""
    lf = _LOG_FACTORIALS
    loss = np.zeros(r.size)
    with np.errstate(divide="ignore"):
        log_q, log_not_q = np.log(qn), np.maximum(np.log1p(-qn), -1e300)
    top_r = np.zeros(qn.shape[0], dtype=np.int64)
    np.maximum.at(top_r, qi, r)
    for c in range(qn.shape[1]):
        live = np.flatnonzero(j <= cut[qi, c])  # else P(X_c >= j) <= tail
        if live.size == 0:
            continue
        users = np.unique(qi[live])
        users = users[np.argsort(top_r[users], kind="stable")]
        rank = np.empty(qn.shape[0], dtype=np.int64)
        rank[users] = np.arange(users.size)
        live = live[np.argsort(rank[qi[live]], kind="stable")]
        edges = np.searchsorted(rank[qi[live]], np.arange(0, users.size, _USER_BLOCK))
        for cells in np.split(live, edges[1:]):
            block = users[rank[qi[cells[0]]]: rank[qi[cells[-1]]] + 1]
            owner = rank[qi[cells]] - rank[block[0]]
            rc, yc = r[cells], r[cells] - j[cells]
            r0 = int(rc.min())
            rows = np.arange(r0, int(rc.max()) + 1)
            ys = np.arange(int(yc.max()) + 1)
            xs = rows[:, None] - ys[None, :]
            comb = np.where(xs >= 0, lf[rows][:, None] - lf[ys] - lf[np.maximum(xs, 0)],
                            -np.inf)
            # log[q^x (1-q)^y] = R log q + y (log(1-q) - log q): an outer sum of small tables
            table = comb + (rows[None, :] * log_q[block, c][:, None])[:, :, None]
            table += (ys[None, :] * (log_not_q[block, c] - log_q[block, c])[:, None])[:, None, :]
            np.exp(table, out=table)
            above = np.cumsum(table, axis=2)
            rr = rc - r0
            loss[cells] += (np.where(yc >= 1, above[owner, rr, np.maximum(yc - 1, 0)], 0.0)
                            + 0.5 * table[owner, rr, yc])
    return loss


def _region_c(qn: np.ndarray, cut: np.ndarray, qi: np.ndarray, r: np.ndarray, j: np.ndarray,
              owner: np.ndarray) -> np.ndarray:
    """``G(R, j)`` by generating-function coefficient extraction, for the cells with
    ``owner`` (``R >= 2j``) and, free of charge, for any other cell whose query has owner
    cells at the same ``j`` (the polynomial already holds every degree below); cells left
    over come back as NaN.

    Cells are grouped by ``j``; every (query, Gauss node) pair is one row, and each wrong
    class multiplies all rows at once (:func:`_convolve_rows`). Each query keeps one scale
    ``s = min(R_max / 2, 600)`` for every ``j``, so its kernel rows ``(q'_c s)^x / x!`` are
    computed once. A class that cannot exceed ``cut < j`` (up to the tail bound) needs only
    ``cut + 1`` kernel terms, so late, small classes use shorter kernels.
    """
    lf = _LOG_FACTORIALS
    g = np.full(r.size, np.nan)
    scale = np.ones(qn.shape[0])
    np.maximum.at(scale, qi[owner], np.minimum(r[owner] / 2.0, 600.0))
    log_s = np.log(scale)
    xs = np.arange(int(r.max()) + 1)
    top_j = int(j[owner].max())
    kern_all = np.exp(xs[None, None, : top_j + 1] * (np.log(np.maximum(qn, 1e-300))
                                                     + log_s[:, None])[:, :, None]
                      - lf[: top_j + 1])
    pos = np.full(qn.shape[0], -1)
    order = np.argsort(j.astype(np.int16), kind="stable")  # cells arrive sorted by query
    for sel in np.split(order, np.flatnonzero(np.diff(j[order])) + 1):
        jj = int(j[sel[0]])
        rows_of = sel[owner[sel]]
        if rows_of.size == 0:
            continue
        users, first = np.unique(qi[rows_of], return_index=True)
        rmax = np.maximum.reduceat(r[rows_of], first)
        nc = (qn[users] > 0).sum(axis=1)
        by_nc = np.lexsort((-rmax, -nc))
        users, rmax, nc = users[by_nc], rmax[by_nc], nc[by_nc]
        reach = (cut[users] >= jj).sum(axis=1)  # classes that can tie at j: degree in u
        nodes = np.minimum(reach, rmax // jj) // 2 + 1
        row_user = np.repeat(np.arange(users.size), nodes)
        row_node = np.arange(row_user.size) - np.repeat(np.cumsum(nodes) - nodes, nodes)
        u = np.empty(row_user.size)
        w = np.empty(row_user.size)
        for m in np.unique(nodes):
            at = nodes[row_user] == m
            u[at], w[at] = (a[row_node[at]] for a in _gauss01(int(m)))
        row_q, row_nc, row_rmax = users[row_user], nc[row_user], rmax[row_user]
        width_max = int(rmax.max()) + 1
        bufs = [np.zeros((row_user.size, jj + width_max)) for _ in range(2)]  # jj zero margin
        bufs[0][:, jj: 2 * jj + 1] = kern_all[row_q, 0, : jj + 1]
        bufs[0][:, 2 * jj] *= u
        done, degree = row_user.size, jj
        for c in range(1, int(nc.max())):
            src, dst = bufs
            n = int(np.count_nonzero(row_nc > c))
            dst[n:done] = src[n:done]  # rows whose classes are all in stay as they are
            done = n
            taps = min(jj, int(cut[row_q[:n], c].max())) + 1
            degree += taps - 1
            width = min(int(row_rmax[:n].max()), degree) + 1
            kern = kern_all[row_q[:n], c, :taps]
            if taps > jj:
                kern[:, jj] *= u[:n]
            _convolve_rows(src[:n], jj, kern, dst[:n, jj: jj + width])
            dst[:n, jj + width:] = 0.0
            bufs = [dst, src]
        poly = bufs[0][:, jj:]
        poly *= w[:, None]
        coef = np.add.reduceat(poly, np.cumsum(nodes) - nodes, axis=0)
        pos[users] = np.arange(users.size)
        hit = sel[pos[qi[sel]] >= 0]
        g[hit] = np.exp(lf[r[hit]] - r[hit] * log_s[qi[hit]]) * coef[pos[qi[hit]], r[hit]]
        pos[users] = -1
    return np.clip(g, 0.0, 1.0)


def _binomial_window(ks: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (query, K): the j-range ``[j_lo, min(j_hi, K/2)]`` outside which
    ``Bin(K, q)`` has mass <= tail on each side (:func:`_tail_reach`)."""
    k = ks[None, :].astype(float)
    mean = k * q[:, None]
    reach = _tail_reach(k, q[:, None])
    j_lo = np.maximum(np.floor(mean - reach), 0).astype(np.int64)
    j_hi = np.minimum(np.ceil(mean + reach), ks[None, :] // 2).astype(np.int64)
    return j_lo, j_hi


def vote_exact_batch(probs: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Exact plurality accuracy for many answer distributions at once.

    ``probs`` is ``(n, C)``: column 0 the true answer, the rest wrong classes (zero
    padded). ``ks`` sorted, unique, >= 1. Returns ``(n, len(ks))``. With ``n`` wrong
    classes, ``G(R, j) = 0`` when ``R > n j`` (some wrong class must exceed ``j``), so::

        acc(K) = 1 - P(X_0 < K / (n + 1)) - sum_{K/(n+1) <= j <= K/2} Bin(j; K, q0) (1 - G)

    (cells with ``j > K/2`` are wins). The first term is one binomial CDF; only the middle
    cells inside the binomial window of ``X_0`` (:func:`_binomial_window`) are visited.
    """
    if ks[-1] > MAX_EXACT_K:
        raise ValueError(f"exact vote accuracy supports K <= {MAX_EXACT_K}, got K = {ks[-1]}")
    probs = np.asarray(probs, dtype=float)
    probs = probs / probs.sum(axis=1, keepdims=True)
    q0 = probs[:, 0]
    wrong = -np.sort(-probs[:, 1:], axis=1)
    out = np.where(q0[:, None] > 0, 1.0, 0.0) * np.ones(ks.size)
    todo = np.flatnonzero((q0 > 0) & (q0 < 1))
    if todo.size == 0:
        return out
    lf = _LOG_FACTORIALS
    n_wrong = (wrong[todo] > 0).sum(axis=1)
    j_lo, j_hi = _binomial_window(ks, q0[todo])
    first = -((-ks[None, :]) // (n_wrong[:, None] + 1))  # ceil(K / (n + 1))
    low = j_lo < first
    loss_low = np.zeros(low.shape)
    loss_low[low] = special.bdtr((first - 1)[low], np.broadcast_to(ks, low.shape)[low],
                                 np.broadcast_to(q0[todo, None], low.shape)[low])
    j_lo = np.maximum(j_lo, first)
    count = np.maximum(j_hi - j_lo + 1, 0)
    chunk_of = np.cumsum(count.sum(axis=1)) // _CELL_BUDGET
    for c in np.unique(chunk_of):
        pick = np.flatnonzero(chunk_of == c)
        rows = todo[pick]
        cnt = count[pick].ravel()
        group = np.repeat(np.arange(cnt.size), cnt)
        j = np.arange(group.size) + np.repeat(j_lo[pick].ravel() - (np.cumsum(cnt) - cnt), cnt)
        qi, kk = group // ks.size, ks[group % ks.size]
        r = kk - j
        logp0 = (lf[kk] - lf[j] - lf[r] + j * np.log(q0[rows])[qi]
                 + r * np.log1p(-q0[rows])[qi])
        live = logp0 > _LOG_TAIL
        group, qi, j, r, logp0 = group[live], qi[live], j[live], r[live], logp0[live]
        loss = np.exp(logp0)
        qn = np.minimum(wrong[rows] / (1.0 - q0[rows, None]), 1.0)
        cut = np.where(qn > 0, _upper_cut(qn, int(ks[-1])), -1)
        in_c = r >= 2 * j
        g = _region_c(qn, cut, qi, r, j, in_c) if in_c.any() else np.full(r.size, np.nan)
        loss *= np.where(in_c, 1.0 - g, 1.0)
        rest = np.flatnonzero(~in_c)
        done = ~np.isnan(g[rest])
        loss[rest[done]] *= 1.0 - g[rest[done]]
        rest = rest[~done]  # R/2 < j <= R cells without a polynomial to read from
        if rest.size:
            loss[rest] *= _region_b(qn, cut, qi[rest], r[rest], j[rest])
        lost = np.bincount(group, weights=loss, minlength=cnt.size)
        out[rows] = 1.0 - loss_low[pick] - lost.reshape(rows.size, ks.size)
    return np.clip(out, 0.0, 1.0)


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    width = max(len(row) for row in rows)
    out = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _filter_vote_batch(counts: list[np.ndarray], ks: np.ndarray) -> np.ndarray:
    """Exact Filter-Vote accuracy (Chen et al., Sec. 2) for many pools.

    A budget of K calls buys ``g = K // 2`` generations and ``g`` judge calls (for odd K
    the spare call is unused, as in the authors' ``int(K/2)``); the plurality is taken over
    the kept generations, or over all ``g`` if the judge rejected every one. ``K = 1``
    affords no judge call: one unjudged generation, right with the pool's share of correct
    answers. With ``pi`` the kept share and ``V_T`` / ``V_F`` Vote accuracy on the kept /
    rejected answer distributions::

        FV(g) = sum_{m=1}^{g} Bin(m; g, pi) V_T(m) + (1 - pi)^g V_F(g).

    Faithfulness: the authors' released Filter-Vote code breaks ties alphabetically and,
    when the judge rejects every answer, returns the alphabetically first one (and fails
    at K = 1). llmnet follows the paper's text instead: ties are broken uniformly at random
    and an all-rejected draw falls back to the plurality over all ``g`` generations; K = 1
    is one unjudged generation. Both choices are visible here and in
    :func:`vote_accuracy_mc`, so a user comparing with the authors' numbers knows where
    the two can differ (only on draws with tied or all-rejected answers).
    """
    kept = _pad([c[0] for c in counts])
    dropped = _pad([c[1] for c in counts])
    total = kept.sum(axis=1) + dropped.sum(axis=1)
    pi = kept.sum(axis=1) / total
    out = np.empty((len(counts), ks.size))
    out[:, ks == 1] = ((kept[:, 0] + dropped[:, 0]) / total)[:, None]
    ug, inv = np.unique(ks[ks >= 2] // 2, return_inverse=True)
    if ug.size == 0:
        return out
    m = np.arange(1, ug[-1] + 1)
    lf = _LOG_FACTORIALS
    res = np.zeros((len(counts), ug.size))
    has_k, has_d = pi > 0, pi < 1
    if has_k.any():
        v_kept = vote_exact_batch(kept[has_k], m)
        p = pi[has_k, None, None]
        gg, mm = ug[None, :, None], m[None, None, :]
        logb = (lf[gg] - lf[mm] - lf[np.maximum(gg - mm, 0)] + special.xlogy(mm, p)
                + special.xlog1py(gg - mm, -p))
        weights = np.where(mm <= gg, np.exp(logb), 0.0)
        res[has_k] = np.einsum("qgm,qm->qg", weights, v_kept)
    if has_d.any():
        v_drop = vote_exact_batch(dropped[has_d], ug)
        res[has_d] += np.exp(ug[None, :] * np.log1p(-pi[has_d, None])) * v_drop
    out[:, ks >= 2] = res[:, inv]
    return np.clip(out, 0.0, 1.0)


def exact_many(counts: list[np.ndarray], ks_unique: np.ndarray, method: str) -> np.ndarray:
    if method == "vote":
        return vote_exact_batch(_pad(counts), ks_unique)
    return _filter_vote_batch(counts, ks_unique)
