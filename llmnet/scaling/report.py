"""The scaling report: exact curves per difficulty group, their shape and K*, every fit and a
recommended one (Chen et al., arXiv 2403.02419, and our extensions).

For each group (``overall`` and the difficulty buckets) the report holds the exact mean
accuracy and its standard error at every K, the curve's ``shape`` and ``k_star``
(:mod:`llmnet.scaling.shape`, paired bootstrap over queries), and four fits made on
``K <= fit_max_k`` only:

* ``bilevel`` -- the paper's bi-level model (faithful);
* ``per_query_law`` -- the authors' released per-query law, on their K set and their
  100-trial Monte-Carlo targets (faithful);
* ``mixture`` -- our multi-level mixture of ``I_K(p)`` curves;
* ``answer_dist`` -- our per-query answer-distribution law (Vote only).

``recommended`` is chosen from the data alone: each fit is refitted with one fitted K left
out and scored by the absolute error at that K (leave-one-K-out over the fitted range, at
most ``MAX_FOLDS`` log-spaced Ks, the largest always among them);
the lowest mean error wins, ties in the order above reversed (the richer model first).
No number from beyond the fitted range enters the choice. ``fitted_shape`` is the shape of
the recommended fit's curve on ``ks`` under the same rule as ``shape``.

Buckets with fewer than :data:`MIN_BUCKET` queries are merged into a neighbour: ``tied``
(d = 0, the true answer ties for the mode) into ``easy``, as the authors' per-query law
treats a tied mode as easy; in a quantile scheme into the adjacent smaller bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from llmnet.scaling.answer_law import fit_answer_distribution
from llmnet.scaling.laws import (
    K_RANGE,
    BilevelFit,
    MixtureFit,
    bilevel_curve,
    binary_vote,
    fit_bilevel,
    fit_mixture,
)
from llmnet.scaling.query_law import PER_QUERY_KS, fit_per_query_law
from llmnet.scaling.shape import curve_shape, k_star_band, paired_bootstrap
from llmnet.scaling.vote import bucket_pools, check_ks, difficulty, vote_accuracy_pools

MIN_BUCKET = 10
MAX_FOLDS = 8  # leave-one-K-out over at most this many fitted Ks, log-spaced, the largest always in


def held_out_ks(fit_ks: np.ndarray) -> np.ndarray:
    """The fitted Ks left out one at a time when scoring fits (all of them up to MAX_FOLDS)."""
    if fit_ks.size <= MAX_FOLDS:
        return fit_ks
    idx = np.unique(np.round(np.geomspace(1, fit_ks.size, MAX_FOLDS)).astype(int) - 1)
    return fit_ks[idx]
FITS = ("bilevel", "per_query_law", "mixture", "answer_dist")
_PREFERENCE = ("answer_dist", "mixture", "per_query_law", "bilevel")


@dataclass(frozen=True)
class GroupResult:
    """One group of queries in a :class:`ScalingReport` (see the module docstring)."""

    name: str
    members: tuple[str, ...]     # buckets merged into this group (its own name first)
    n_queries: int
    n_generations: int
    d_range: tuple[float, float]
    acc: np.ndarray
    se: np.ndarray
    shape: str
    k_star: object               # KStarBand
    fits: dict                   # name -> ScalingFit or None
    fit_errors: dict             # name -> message
    loko: dict                   # name -> leave-one-K-out mean absolute error
    recommended: str | None
    fitted_shape: str | None

    def to_dict(self, ks, fit_max_k) -> dict:
        kk = np.asarray(ks)
        inside = kk <= (fit_max_k if fit_max_k is not None else kk[-1])
        fits = {}
        for name, fit in self.fits.items():
            if fit is None:
                continue
            mean, lo, hi = fit.predict(kk)
            err = np.abs(mean - self.acc)
            fits[name] = {**fit.to_dict(), "predicted": {"mean": mean.tolist(), "lo": _nan_none(lo),
                                                         "hi": _nan_none(hi)},
                          "mae_fitted_range": float(err[inside].mean()),
                          "mae_beyond": float(err[~inside].mean()) if (~inside).any() else None,
                          "mae_all": float(err.mean()), "loko_mae": _finite(self.loko.get(name))}
        return {"name": self.name, "merged": list(self.members[1:]), "n_queries": self.n_queries,
                "n_generations": self.n_generations, "d_range": list(self.d_range),
                "acc": self.acc.tolist(), "se": self.se.tolist(), "shape": self.shape,
                "k_star": self.k_star.to_dict(), "recommended": self.recommended,
                "fitted_shape": self.fitted_shape, "fits": fits, "fit_errors": dict(self.fit_errors)}


def _finite(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _nan_none(a) -> list:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


@dataclass(frozen=True)
class ScalingReport:
    """Accuracy against K, overall and per difficulty group, with fits, shapes and K*.
    ``to_dict`` is the ``scaling.json`` contract documented in the README."""

    method: str
    ks: tuple[int, ...]
    fit_max_k: int | None
    pool_size: int
    level: float
    scheme: str
    groups: dict
    n_queries: int
    n_generations: int
    n_judge_calls: int

    def to_dict(self) -> dict:
        return {"method": self.method, "ks": list(self.ks), "fit_max_k": self.fit_max_k,
                "pool_size": self.pool_size, "level": self.level, "buckets": self.scheme,
                "n_queries": self.n_queries, "n_generations": self.n_generations,
                "n_judge_calls": self.n_judge_calls,
                "groups": {k: g.to_dict(self.ks, self.fit_max_k) for k, g in self.groups.items()}}

    def summary(self) -> str:
        lines = [f"scaling report: {self.method}, {self.n_queries} queries, {self.n_generations} generations, "
                 f"K in [{self.ks[0]}, {self.ks[-1]}], fits on K <= {self.fit_max_k or self.ks[-1]}"]
        kk = np.asarray(self.ks)
        for g in self.groups.values():
            ks_ = g.k_star
            lines.append(f"[{g.name}] {g.n_queries} queries: {g.shape}, acc {g.acc[0]:.4f} (K={kk[0]}) -> "
                         f"{g.acc[-1]:.4f} (K={kk[-1]}); K* {ks_.value} [{ks_.lo}, {ks_.hi}], argmax {ks_.argmax}; "
                         f"recommended fit {g.recommended} ({g.fitted_shape})")
            for name, fit in g.fits.items():
                if fit is None:
                    lines.append(f"    {name:14s} not fitted: {g.fit_errors.get(name)}")
                    continue
                mae = float(np.mean(np.abs(fit.predict(kk)[0] - g.acc)))
                lines.append(f"    {name:14s} MAE over all K {mae:.4f}, leave-one-K-out {g.loko.get(name, math.nan):.4f}")
        return "\n".join(lines)


def merge_small(groups: dict[str, list], order: list[str], minimum: int = MIN_BUCKET) -> dict[str, tuple]:
    """Merge buckets with fewer than ``minimum`` pools (see the module docstring): name ->
    (member bucket names, pools). A single bucket left is dropped (it is ``overall``)."""
    items = [(name, [name], list(groups[name])) for name in order if name in groups]
    while len(items) > 1:
        small = [i for i, (_, _, p) in enumerate(items) if len(p) < minimum]
        if not small:
            break
        i = min(small, key=lambda i: len(items[i][2]))
        names = [n for n, _, _ in items]
        if items[i][0] == "tied" and "easy" in names:
            j = names.index("easy")
        else:
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(items)]
            j = min(near, key=lambda j: len(items[j][2]))
        keep, gone = (j, i) if len(items[j][2]) >= len(items[i][2]) else (i, j)
        name, members, pools = items[keep]
        items[keep] = (name, members + items[gone][1], pools + items[gone][2])
        del items[gone]
    if len(items) == 1:
        return {}
    return {name: (tuple(members), pools) for name, members, pools in items}


def _replicates(fit, ks, n_boot: int, seed: int):
    """Paired replicate curves of a fit on ``ks`` (None when it has none)."""
    kk = check_ks(ks)
    if hasattr(fit, "query_curves"):
        return paired_bootstrap(fit.query_curves(kk), n_boot, seed)
    if isinstance(fit, MixtureFit):
        return fit.boot_weights @ binary_vote(fit.grid[None, :], kk[:, None]).T
    if isinstance(fit, BilevelFit) and fit.band_estimable:
        draws = np.random.default_rng(seed).multivariate_normal(fit._theta(), fit.cov, size=n_boot, method="eigh")
        draws = np.clip(draws, [0, 0.5, 0], [1, 1, 0.5])
        return bilevel_curve(draws[:, :1], draws[:, 1:2], draws[:, 2:], kk[None, :])
    return None


def scaling_report(pools, ks, method: str = "vote", buckets: str = "easy_hard", fit_max_k: int | None = None,
                   pool_size: int | None = None, *, n_quantiles: int = 3, level: float = 0.95,
                   k_range=K_RANGE, per_query_ks=PER_QUERY_KS, per_query_targets: str = "mc",
                   n_boot: int = 1000, seed: int = 0, select: bool = True) -> ScalingReport:
    """Build a :class:`ScalingReport` from sample pools (module docstring). Per-query laws
    are fitted once on every query and shared by the groups. ``per_query_targets="mc"``
    (default) is the authors' 100-trial Monte Carlo, ``"exact"`` our exact targets.
    ``select=False`` skips the leave-one-K-out refits (no ``recommended``). Fits that cannot
    be made are ``None`` with a message."""
    pools = list(pools)
    if not pools:
        raise ValueError("scaling_report needs at least one pool")
    kk = np.unique(check_ks(ks))
    acc = vote_accuracy_pools(pools, kk, method)
    size = int(min(len(p.answers) for p in pools)) if pool_size is None else int(pool_size)
    fit_ks = kk if fit_max_k is None else kk[kk <= fit_max_k]
    if fit_ks.size == 0:
        raise ValueError(f"no K <= fit_max_k={fit_max_k} among the Ks")
    law_ks = np.asarray([k for k in per_query_ks if fit_max_k is None or k <= fit_max_k])
    d_all = np.array([difficulty(p, method=method, draws=0).d for p in pools])
    index = {id(p): i for i, p in enumerate(pools)}
    order = ["easy", "tied", "hard"] if buckets == "easy_hard" else [f"q{i + 1}" for i in range(n_quantiles)]
    merged = merge_small(bucket_pools(pools, buckets, n_quantiles, method), order)
    groups = {"overall": (("overall",), pools), **merged}

    def per_query(name: str, drop: int | None):
        if name == "per_query_law":
            use = law_ks[law_ks != drop] if drop is not None else law_ks
            if use.size == 0:
                raise ValueError(f"no K of the authors' set {list(per_query_ks)} is <= fit_max_k={fit_max_k}")
            return fit_per_query_law(pools, use, targets=per_query_targets, rng=seed, method=method,
                                     level=level, k_range=k_range if drop is None else (1, 2), seed=seed)
        if method != "vote":
            raise ValueError("the answer-distribution law is Vote-only (Filter-Vote curves depend on the judge)")
        use = fit_ks[fit_ks != drop] if drop is not None else fit_ks
        cols = np.searchsorted(kk, use)
        return fit_answer_distribution(pools, use, targets=acc[:, cols], level=level,
                                       k_range=k_range if drop is None else (1, 2), seed=seed)

    shared, shared_err, folds = {}, {}, {}
    for name in ("per_query_law", "answer_dist"):
        try:
            shared[name] = per_query(name, None)
        except (ValueError, np.linalg.LinAlgError) as exc:
            shared[name], shared_err[name] = None, str(exc)
        if select and shared[name] is not None and fit_ks.size > 1:
            folds[name] = {}
            for k in held_out_ks(fit_ks):
                if name == "per_query_law" and k not in law_ks:
                    folds[name][int(k)] = shared[name]
                    continue
                try:
                    folds[name][int(k)] = per_query(name, int(k))
                except (ValueError, np.linalg.LinAlgError):
                    folds[name][int(k)] = None

    results = {}
    for g_i, (name, (members, group)) in enumerate(groups.items()):
        rows = np.array([index[id(p)] for p in group], dtype=int)
        sub = acc[rows]
        mean = sub.mean(axis=0)
        se = sub.std(axis=0, ddof=1) / np.sqrt(rows.size) if rows.size > 1 else np.zeros_like(mean)
        reps = paired_bootstrap(sub, n_boot, seed + g_i)
        cols = np.searchsorted(kk, fit_ks)
        fits, errors, loko = {}, {}, {}
        group_fitters: dict[str, Callable] = {"bilevel": fit_bilevel, "mixture": fit_mixture}
        for model in FITS:
            try:
                if model in shared:
                    if shared[model] is None:
                        raise ValueError(shared_err[model])
                    fits[model] = shared[model].subset(rows, k_range, seed=seed)
                else:
                    fits[model] = group_fitters[model](fit_ks, mean[cols], se[cols], level=level,
                                                       k_range=k_range, seed=seed)
            except (ValueError, np.linalg.LinAlgError) as exc:
                fits[model], errors[model] = None, str(exc)
                continue
            if select and fit_ks.size > 1:
                loko[model] = _loko(model, fits[model], folds.get(model), rows, fit_ks, mean[cols], se[cols],
                                    group_fitters, level, seed)
        ok = {m: v for m, v in loko.items() if math.isfinite(v)}
        recommended = min(ok, key=lambda m: (round(ok[m], 10), _PREFERENCE.index(m))) if ok else None
        fitted_shape = None
        if recommended is not None:
            fit = fits[recommended]
            fitted_shape = curve_shape(fit.predict(kk)[0], _replicates(fit, kk, n_boot, seed), level)
        results[name] = GroupResult(
            name, members, int(rows.size), int(sum(len(p.answers) for p in group)),
            (float(d_all[rows].min()), float(d_all[rows].max())), mean, se, curve_shape(mean, reps, level),
            k_star_band(kk, mean, reps, level), fits, errors, loko, recommended, fitted_shape)
    n_gen = int(sum(len(p.answers) for p in pools))
    return ScalingReport(method, tuple(int(k) for k in kk), fit_max_k, size, level, buckets, results, len(pools),
                         n_gen, n_gen if method == "filter_vote" else 0)


def _loko(model, fit, folds, rows, fit_ks, mean, se, group_fitters, level, seed) -> float:
    """Leave-one-K-out mean absolute error of ``model`` on the group's fitted range."""
    errs = []
    held = set(held_out_ks(fit_ks).tolist())
    for i, k in enumerate(fit_ks):
        if int(k) not in held:
            continue
        try:
            if folds is not None:
                part = folds.get(int(k))
                if part is None:
                    return math.inf
                pred = part.query_curves([k])[rows].mean()
            else:
                keep = np.arange(fit_ks.size) != i
                part = group_fitters[model](fit_ks[keep], mean[keep], se[keep], level=level, k_range=(1, 2),
                                            n_boot=20, seed=seed) if model == "mixture" else \
                    group_fitters[model](fit_ks[keep], mean[keep], se[keep], level=level, k_range=(1, 2),
                                         n_draws=20, seed=seed)
                pred = part.predict([k])[0][0]
        except (ValueError, np.linalg.LinAlgError):
            return math.inf
        errs.append(abs(float(pred) - float(mean[i])))
    return float(np.mean(errs))


__all__ = ["FITS", "MIN_BUCKET", "GroupResult", "ScalingReport", "merge_small", "scaling_report"]
