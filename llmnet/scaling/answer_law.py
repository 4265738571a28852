"""Per-query answer-distribution law: extrapolate Vote accuracy through the exact estimator.

Our extension of Chen et al. (arXiv 2403.02419). A query's Vote curve is a function of its
answer distribution alone: the true answer's share ``q0`` and the shares of the wrong
answers (``llmnet.scaling.vote``). The curve at small K identifies the first few
features of that distribution -- ``acc(1) = acc(2) = q0``, ``acc(3)`` adds the collision
mass ``sum_i q_i^2`` of the wrong answers, ``acc(4)``, ``acc(5)`` higher power sums --
and those features decide where the curve goes as K grows: whether the true answer or the
strongest wrong answer wins the limit, and how fast.

So per query we fit a three-parameter answer distribution to its accuracies on the fitted
Ks and push it through the exact estimator at every K:

    true share q0;  wrong mass (1 - q0) split as  f1  on the strongest wrong answer and
    (1 - f1) over ``N_TAIL`` more wrong answers with geometric shares  rho^0, rho^1, ...

(``rho = 0``: one more wrong answer; ``rho = 1``: ``N_TAIL`` equal ones.) The fit starts
from a grid of (f1, rho) shapes -- ``q0`` is read off ``acc(1)`` or ``acc(2)`` when a fitted
K is 1 or 2, else it is on the grid too -- and refines every query at once by damped
Gauss-Newton steps with a finite-difference Jacobian. Per-query standard errors come from
that Jacobian (``rss / dof`` scaled, NaN where not identified); the band of the task
curve is the spread across queries (``var_q / n``), as for the authors' per-query law.

This law is the Vote analogue of the authors' per-query law: it sees exactly the same
per-query targets, and fits a model whose family contains every real curve's own shape
near the limit, where the authors' ``1 - exp(-a1 K - a2 sqrt(K) - a3)`` has to guess.
Filter-Vote curves are not a function of one answer distribution, so the law is Vote-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from llmnet.scaling.laws import K_RANGE, KStar, ScalingFit, bootstrap_means, curve_kind, k_grid, k_star_from_curves
from llmnet.scaling.vote import check_ks, vote_accuracy_pools
from llmnet.scaling.vote_exact import vote_exact_batch

N_TAIL = 7
_F1_GRID = np.linspace(0.05, 1.0, 20)
_RHO_GRID = np.linspace(0.0, 1.0, 11)
_Q0_GRID = np.linspace(0.0, 1.0, 41)
_STEPS = 8
_H = 1e-4
_BATCH = 200_000  # answer distributions per call of the exact estimator


def answer_shares(q0, f1, rho) -> np.ndarray:
    """``(n, 2 + N_TAIL)`` answer distributions: true share first, then the wrong ones."""
    q0, f1, rho = (np.clip(np.asarray(v, dtype=float), 0.0, 1.0) for v in (q0, f1, rho))
    tail = rho[:, None] ** np.arange(N_TAIL)[None, :]
    tail /= tail.sum(axis=1, keepdims=True)
    wrong = np.column_stack([f1, (1 - f1)[:, None] * tail])
    return np.column_stack([q0, (1 - q0)[:, None] * wrong])


def _curves(theta: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Exact Vote accuracy of the distributions ``theta = (q0, f1, rho)`` rows at ``ks``."""
    probs = answer_shares(theta[:, 0], theta[:, 1], theta[:, 2])
    out = np.empty((probs.shape[0], ks.size))
    batch = max(500, min(_BATCH, int(_BATCH * 25 / (ks.size * ks.max()))))  # bounded memory at large K
    for start in range(0, probs.shape[0], batch):
        out[start: start + batch] = vote_exact_batch(probs[start: start + batch], ks)
    return out


def _grid_start(targets: np.ndarray, ks: np.ndarray, q0_known: np.ndarray | None) -> np.ndarray:
    """Best (q0, f1, rho) per query on the shape grid (and the q0 grid when q0 is unknown)."""
    f1, rho = (g.ravel() for g in np.meshgrid(_F1_GRID, _RHO_GRID, indexing="ij"))
    n, m = targets.shape[0], f1.size
    if q0_known is not None:
        theta = np.column_stack([np.repeat(q0_known, m), np.tile(f1, n), np.tile(rho, n)])
        loss = ((_curves(theta, ks).reshape(n, m, -1) - targets[:, None, :]) ** 2).sum(-1)
        return theta.reshape(n, m, 3)[np.arange(n), loss.argmin(axis=1)]
    grid = np.column_stack([np.repeat(_Q0_GRID, m), np.tile(f1, _Q0_GRID.size),
                            np.tile(rho, _Q0_GRID.size)])
    curves = _curves(grid, ks)
    loss = ((targets ** 2).sum(1)[:, None] - 2 * targets @ curves.T + (curves ** 2).sum(1)[None, :])
    return grid[loss.argmin(axis=1)]


def _jacobian(theta: np.ndarray, ks: np.ndarray, free: list[int], base: np.ndarray) -> np.ndarray:
    """Forward differences (backward at an upper bound): ``(n, len(ks), len(free))``."""
    cols = []
    for i in free:
        step = np.where(theta[:, i] + _H <= 1.0, _H, -_H)
        moved = theta.copy()
        moved[:, i] += step
        cols.append((_curves(moved, ks) - base) / step[:, None])
    return np.stack(cols, axis=2)


def _refine(theta: np.ndarray, targets: np.ndarray, ks: np.ndarray, free: list[int]):
    """Damped Gauss-Newton on every query at once, inside the unit box; keeps a step only
    where it lowers that query's loss. Returns (theta, fitted curves, Jacobian)."""
    fitted = _curves(theta, ks)
    loss = ((fitted - targets) ** 2).sum(1)
    damping = np.full(theta.shape[0], 1e-3)
    eye = np.eye(len(free))
    jac = _jacobian(theta, ks, free, fitted)
    for _ in range(_STEPS):
        resid = targets - fitted
        jtj = np.einsum("nki,nkj->nij", jac, jac)
        jtr = np.einsum("nki,nk->ni", jac, resid)
        scale = np.maximum(np.einsum("nii->ni", jtj), 1e-12)
        try:
            step = np.linalg.solve(jtj + damping[:, None, None] * scale[:, :, None] * eye, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        trial = theta.copy()
        trial[:, free] = np.clip(theta[:, free] + step, 0.0, 1.0)
        new = _curves(trial, ks)
        new_loss = ((new - targets) ** 2).sum(1)
        better = new_loss < loss
        theta[better], fitted[better], loss[better] = trial[better], new[better], new_loss[better]
        damping = np.where(better, damping / 3, damping * 4)
        if better.any():
            jac[better] = _jacobian(theta[better], ks, free, fitted[better])
    return theta, fitted, jac


@dataclass(frozen=True)
class AnswerDistributionFit(ScalingFit):
    """Per-query answer-distribution law (see the module docstring): per-query ``params``
    ``q0``, ``f1``, ``rho`` with ``stderr`` from the Gauss-Newton Jacobian; ``predict``
    is the mean of the per-query exact curves, its band ``mean +- z sd_q / sqrt(n)``; the
    fit's ``k_star`` interval is a bootstrap over queries."""

    params: dict
    stderr: dict
    ks: np.ndarray
    targets: np.ndarray
    level: float
    k_star: KStar
    model: str = "answer_dist"

    def _theta(self) -> np.ndarray:
        return np.column_stack([self.params["q0"], self.params["f1"], self.params["rho"]])

    def query_curves(self, ks) -> np.ndarray:
        """Per-query predictions: ``(n_queries, len(ks))``."""
        kk = check_ks(ks)
        uniq, inv = np.unique(kk, return_inverse=True)
        theta, rows = np.unique(self._theta(), axis=0, return_inverse=True)
        return _curves(theta, uniq)[np.ravel(rows)][:, inv]

    def subset(self, rows, k_range=K_RANGE, n_boot: int = 200, seed: int = 0) -> AnswerDistributionFit:
        """The fit restricted to some queries, its K* recomputed over ``k_range``."""
        rows = np.asarray(rows, dtype=int)
        part = replace(self, params={k: v[rows] for k, v in self.params.items()},
                       stderr={k: v[rows] for k, v in self.stderr.items()}, targets=self.targets[rows])
        grid = k_grid(k_range)
        curves = part.query_curves(grid)
        mean = curves.mean(axis=0)
        return replace(part, k_star=k_star_from_curves(grid, mean, bootstrap_means(curves, n_boot, seed),
                                                        curve_kind(mean), self.level, "bootstrap over queries"))

    def predict(self, ks, level: float | None = None):
        curves = self.query_curves(ks)
        n = curves.shape[0]
        sd = np.sqrt(curves.var(axis=0, ddof=1) / n) if n > 1 else np.zeros(curves.shape[1])
        return self._band(curves.mean(axis=0), sd, level)

    def _describe(self) -> str:
        return f"{self.targets.shape[0]} queries, exact targets at K = {self.ks.tolist()}"

    def _extra_dict(self) -> dict:
        return {"n_queries": int(self.targets.shape[0]), "fit_ks": self.ks.tolist(), "n_wrong_classes": 1 + N_TAIL}


def fit_answer_distribution(pools, ks, *, fit_max_k: int | None = None, targets: np.ndarray | None = None,
                            level: float = 0.95, k_range=K_RANGE, n_boot: int = 200,
                            seed: int = 0) -> AnswerDistributionFit:
    """Fit the per-query answer-distribution law (Vote) on the exact accuracies of ``pools``
    at ``ks`` (those ``<= fit_max_k``), or on given per-query ``targets`` at ``ks``.
    Queries with identical targets share one fit."""
    kk = check_ks(ks)
    keep = np.ones(kk.size, bool) if fit_max_k is None else kk <= fit_max_k
    kk = kk[keep]
    if kk.size == 0:
        raise ValueError(f"no K <= fit_max_k={fit_max_k} among ks={list(ks)}")
    if targets is None:
        if len(pools) == 0:
            raise ValueError("fit_answer_distribution needs at least one pool")
        y = vote_accuracy_pools(pools, kk)
    else:
        y = np.asarray(targets, dtype=float)[:, keep]
    uniq, inv = np.unique(np.round(y, 12), axis=0, return_inverse=True)
    inv = np.ravel(inv)
    known = [i for i, k in enumerate(kk) if k <= 2]
    q0 = uniq[:, known].mean(axis=1) if known else None
    free = [1, 2] if known else [0, 1, 2]
    theta = _grid_start(uniq, kk, q0)
    theta, fitted, jac = _refine(theta, uniq, kk, free)
    dof = kk.size - len(known) - len(free) if known else kk.size - len(free)
    rss = ((fitted - uniq) ** 2).sum(1)
    se = np.full(theta.shape, math.nan)
    if dof > 0:
        jtj = np.einsum("nki,nkj->nij", jac, jac)
        ok = np.linalg.cond(jtj) < 1e12
        if ok.any():
            cov = np.linalg.inv(jtj[ok]) * (rss[ok] / dof)[:, None, None]
            se[np.ix_(np.flatnonzero(ok), free)] = np.sqrt(np.maximum(np.einsum("nii->ni", cov), 0))
    if known:
        se[:, 0] = 0.0  # read off the curve exactly (acc(1) = acc(2) = q0 with fair ties)
    names = ("q0", "f1", "rho")
    fit = AnswerDistributionFit({n: theta[inv, i] for i, n in enumerate(names)},
                                {n: se[inv, i] for i, n in enumerate(names)}, kk, y, level,
                                None)  # type: ignore[arg-type]
    return fit.subset(np.arange(y.shape[0]), k_range, n_boot, seed)


__all__ = ["AnswerDistributionFit", "answer_shares", "fit_answer_distribution"]
