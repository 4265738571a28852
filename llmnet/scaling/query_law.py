"""The authors' released per-query scaling law (Chen et al. 2024, arXiv 2403.02419, analysis code).

Split from :mod:`llmnet.scaling.laws` (which holds the bi-level and mixture fits and the
shared :class:`~llmnet.scaling.laws.ScalingFit` / :class:`~llmnet.scaling.laws.KStar`): per
query, ``G1(K) = 1 - exp(-a1 K - a2 sqrt(K) - a3)`` (easy) or ``G2(K) = exp(...)`` (hard),
fitted by least squares; see :class:`PerQueryLawFit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize

from llmnet.scaling.laws import (
    K_RANGE,
    KStar,
    ScalingFit,
    bootstrap_means,
    curve_kind,
    k_grid,
    k_star_from_curves,
    safe_inverse,
)
from llmnet.scaling.vote import check_ks, vote_accuracy_mc, vote_accuracy_pools, vote_counts

PER_QUERY_KS = (2, 5, 10, 20, 50, 100)


def _law_value(theta, ks, easy: bool):
    """G1 = 1 - exp(e) for easy items, G2 = exp(clip(e, -70, 70)) for hard ones,
    ``e = -a1 K - a2 sqrt(K) - a3``."""
    e = -theta[0] * ks - theta[1] * np.sqrt(ks) - theta[2]
    with np.errstate(over="ignore"):
        return 1 - np.exp(e) if easy else np.exp(np.clip(e, -70, 70))


def _law_grad(theta, ks, easy: bool):
    """d G / d (a1, a2, a3) (zero where the hard law's exponent is clipped)."""
    e = -theta[0] * ks - theta[1] * np.sqrt(ks) - theta[2]
    with np.errstate(over="ignore"):
        g = np.exp(e) if easy else -np.exp(np.clip(e, -70, 70)) * ((e > -70) & (e < 70))
    return np.column_stack([ks * g, np.sqrt(ks) * g, g])


@dataclass(frozen=True)
class PerQueryLawFit(ScalingFit):
    """The authors' released per-query law (Chen et al.'s analysis code), faithfully.

    Per query: easy if ``y*`` is a mode of its answer distribution, then
    ``G1(K) = 1 - exp(-a1 K - a2 sqrt(K) - a3)``, else ``G2(K) = exp(-a1 K - a2 sqrt(K) -
    a3)`` with the exponent clipped to +-70; a mode tied among ``r`` answers has its
    targets scaled by ``r`` and its prediction divided by ``r``. Least squares from
    ``[1, 1, 1]``, ``a1, a2 >= 1e-6``, L-BFGS-B (with the exact gradient). Task accuracy
    is the mean of the per-query ``G(K) / r``. ``params`` hold per-query arrays; the
    ``predict`` band is ``mean +- z se`` with ``se^2 = var_q(G_q) / n`` (the sample of
    queries) plus the per-query parameter variances (delta method) over ``n^2``; the K*
    interval is a bootstrap over queries.
    """

    params: dict
    stderr: dict
    easy: np.ndarray
    ties: np.ndarray
    ks: np.ndarray
    targets: np.ndarray
    target_kind: str
    level: float
    k_star: KStar
    model: str = "per_query_law"

    def _theta(self):
        return np.column_stack([self.params["a1"], self.params["a2"], self.params["a3"]])

    def query_curves(self, ks) -> np.ndarray:
        """Per-query predictions ``G_q(K) / r_q``: ``(n_queries, len(ks))``."""
        kk = check_ks(ks).astype(float)
        return np.array([_law_value(t, kk, e) / r
                         for t, e, r in zip(self._theta(), self.easy, self.ties)])

    def subset(self, rows, k_range=K_RANGE, n_boot: int = 200, seed: int = 0) -> PerQueryLawFit:
        """The fit restricted to some queries (their fits are independent), with its K*
        recomputed (bootstrap over those queries)."""
        rows = np.asarray(rows, dtype=int)
        part = replace(self, params={k: v[rows] for k, v in self.params.items()},
                       stderr={k: v[rows] for k, v in self.stderr.items()}, easy=self.easy[rows],
                       ties=self.ties[rows], targets=self.targets[rows])
        grid = k_grid(k_range)
        curves = part.query_curves(grid)
        mean = curves.mean(axis=0)
        return replace(part, k_star=k_star_from_curves(
            grid, mean, bootstrap_means(curves, n_boot, seed), curve_kind(mean), self.level,
            "bootstrap over queries"))

    def predict(self, ks, level: float | None = None):
        kk = check_ks(ks).astype(float)
        curves = self.query_curves(kk)
        n = curves.shape[0]
        grads = (_law_grad(t, kk, e) / r for t, e, r in zip(self._theta(), self.easy, self.ties))
        var = np.array([self.stderr[a] for a in ("a1", "a2", "a3")]).T ** 2
        par_var = sum((g ** 2) @ v for g, v in zip(grads, var))
        se = np.sqrt(np.nan_to_num(curves.var(axis=0, ddof=1) / n if n > 1 else 0.0)
                     + np.nan_to_num(par_var) / n ** 2)
        return self._band(curves.mean(axis=0), se, level)

    def _describe(self) -> str:
        return (f"{self.easy.size} queries ({int(self.easy.sum())} easy), {self.target_kind} "
                f"targets at K = {self.ks.tolist()}")

    def _extra_dict(self) -> dict:
        return {"n_queries": int(self.easy.size), "n_easy": int(self.easy.sum()),
                "fit_ks": self.ks.tolist(), "target_kind": self.target_kind}


def _fit_one_query(y, easy: bool, ties: int, kf: np.ndarray):
    """Least squares of one query's law; returns (a1, a2, a3) and their standard errors."""
    target = y * ties

    def objective(t):
        resid = _law_value(t, kf, easy) - target
        return float(resid @ resid), 2 * _law_grad(t, kf, easy).T @ resid

    res = optimize.minimize(objective, [1.0, 1.0, 1.0], jac=True, method="L-BFGS-B",
                            bounds=[(1e-6, None), (1e-6, None), (None, None)])
    jac = _law_grad(res.x, kf, easy)
    dof = kf.size - 3
    cov = safe_inverse(jac.T @ jac) * (res.fun / dof if dof > 0 else math.nan)
    return res.x, np.sqrt(np.diag(cov))


def fit_per_query_law(pools, ks=PER_QUERY_KS, *, targets: str = "mc", trials: int = 100,
                      rng=None, fit_max_k: int | None = None, method: str = "vote",
                      level: float = 0.95, k_range=K_RANGE, n_boot: int = 200,
                      seed: int = 0) -> PerQueryLawFit:
    """Fit the authors' per-query law (see :class:`PerQueryLawFit`). ``targets="mc"`` is
    faithful (``trials`` resampling trials per K); ``"exact"`` uses the exact estimator.
    ``fit_max_k`` keeps only the K <= fit_max_k of ``ks``. Queries with identical targets
    (exact targets of equal pools) share one fit."""
    if targets not in ("mc", "exact"):
        raise ValueError(f"targets must be 'mc' or 'exact', got {targets!r}")
    if len(pools) == 0:
        raise ValueError("fit_per_query_law needs at least one pool")
    kk = check_ks(ks)
    kk = kk if fit_max_k is None else kk[kk <= fit_max_k]
    if kk.size == 0:
        raise ValueError(f"no K <= fit_max_k={fit_max_k} among ks={list(ks)}")
    gen = np.random.default_rng(rng)
    y_all = vote_accuracy_pools(pools, kk, method) if targets == "exact" else np.array(
        [vote_accuracy_mc(p, kk, trials, gen, method) for p in pools])
    modes = [vote_counts(p, method) for p in pools]
    easy = np.array([c[0] == c.max() for c in modes])
    ties = np.array([int(np.sum(c == c.max())) if e else 1 for c, e in zip(modes, easy)])
    cache: dict = {}
    for y, e, r in zip(y_all, easy, ties):
        key = (e, r, y.tobytes())
        if key not in cache:
            cache[key] = _fit_one_query(y, e, r, kk.astype(float))
    parts = [cache[(e, r, y.tobytes())] for y, e, r in zip(y_all, easy, ties)]
    theta, se = np.array([t for t, _ in parts]), np.array([e for _, e in parts])
    names = ("a1", "a2", "a3")
    fit = PerQueryLawFit({n: theta[:, i] for i, n in enumerate(names)},
                         {n: se[:, i] for i, n in enumerate(names)}, easy, ties, kk, y_all,
                         targets, level, None)  # type: ignore[arg-type]
    return fit.subset(np.arange(len(pools)), k_range, n_boot, seed)
