"""Scaling laws of Vote / Filter-Vote: accuracy against the number of calls K.

Chen et al. 2024, "Are More LLM Calls All You Need?" (arXiv 2403.02419). Three fits, each
returned as a frozen :class:`ScalingFit` with ``params``, ``stderr``, ``conf_int(level)``,
``predict(ks) -> (mean, lo, hi)``, ``k_star`` (a :class:`KStar` with an interval),
``summary()`` and ``to_dict()``:

1. :func:`fit_bilevel` -- the paper's bi-level model (Sec. 4)
   ``F(K) = alpha I_K(p1) + (1 - alpha) I_K(p2)``, ``I_K(p) = sum_{j > K/2} C(K, j) p^j
   (1-p)^(K-j)`` (a tie at even K counts 1/2, so ``I_{2m} = I_{2m-1}``), with the paper's
   closed-form optimum and the exact one (:func:`bilevel_k_star`).
2. :func:`~llmnet.scaling.query_law.fit_per_query_law` (in :mod:`llmnet.scaling.query_law`) --
   the authors' released per-query law (faithful), optionally on exact targets from
   :mod:`llmnet.scaling.vote` instead of Monte Carlo.
3. :func:`fit_mixture` -- our generalisation of the bi-level model to heterogeneous
   difficulty: ``F(K) = sum_l w_l I_K(p_l)`` over a grid of per-call accuracies ``p_l``,
   ``w >= 0``, ``sum w = 1``, fitted by non-negative least squares; two atoms give the
   bi-level model back. Uncertainty by parametric bootstrap.

:mod:`llmnet.scaling.report` ties them to sample pools; :mod:`llmnet.scaling.answer_law`
adds our per-query answer-distribution law.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from llmnet.scaling.vote import check_ks

K_RANGE = (1, 1000)
_HALF_TOL = 1e-6  # |p - 1/2| below this (or its band) is p = 1/2
SHAPES = ("inverse-U", "U", "increasing", "decreasing")


def binary_vote(p, ks) -> np.ndarray:
    """``I_K(p)``: accuracy of a K-call majority over binary answers right with probability
    ``p``, ties broken by a coin; equals ``betainc(ceil(K/2), ceil(K/2), p)``."""
    half = np.ceil(np.asarray(ks, dtype=float) / 2.0)
    return special.betainc(half, half, np.asarray(p, dtype=float))


def _binary_vote_dp(p, ks) -> np.ndarray:
    """``d I_K / dp = (p (1 - p))^(a - 1) / B(a, a)``, ``a = ceil(K/2)``."""
    a = np.ceil(np.asarray(ks, dtype=float) / 2.0)
    p = np.asarray(p, dtype=float)
    return np.exp(special.xlogy(a - 1, p * (1 - p)) - special.betaln(a, a))


def bilevel_curve(alpha, p1, p2, ks) -> np.ndarray:
    """Chen et al.'s bi-level accuracy ``F(K) = alpha I_K(p1) + (1 - alpha) I_K(p2)``."""
    return alpha * binary_vote(p1, ks) + (1 - alpha) * binary_vote(p2, ks)


@dataclass(frozen=True)
class BilevelOptimum:
    """Where the bi-level curve peaks (inverse-U) or dips (U), Chen et al. Sec. 4.

    ``x_star = log[alpha(2p1-1) / ((1-alpha)(1-2p2))] / log[p2(1-p2) / (p1(1-p1))]``; the
    paper's approximation is ``K* ~ 2 x_star`` to the nearest odd integer
    (``k_closed_form``). Exactly, ``F(2m+3) - F(2m+1)`` has the sign of
    ``alpha(2p1-1) r1^(m+1) - (1-alpha)(1-2p2) r2^(m+1)`` (``r = p(1-p)``), which changes
    once, at ``m + 1 = x_star``: ``k_exact = 2 ceil(x_star) - 1``. The curve rises from
    K = 1 to 3 iff ``alpha > t / (1 + t)``, ``t = (1-2p2) r2 / ((2p1-1) r1)``.
    """

    shape: str
    kind: str          # "argmax" or "argmin"
    k_exact: float     # odd K; inf when the curve keeps rising (its sup is the limit alpha)
    k_closed_form: int | None
    x_star: float | None
    rise_threshold: float  # t / (1 + t)


def _bilevel_shape(alpha, p1, p2):
    """Vectorised shape code (index into SHAPES) and ``x_star``."""
    alpha, p1, p2 = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (alpha, p1, p2)))
    a, b = alpha * (2 * p1 - 1), (1 - alpha) * (1 - 2 * p2)
    r1, r2 = p1 * (1 - p1), p2 * (1 - p2)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(a / b) / np.log(r2 / r1)
    rises = a * r1 > b * r2
    shape = np.where(r1 < r2, np.where(rises, 0, 3), np.where(r1 > r2, np.where(rises, 2, 1),
                                                               np.where(a > b, 2, 3)))
    shape = np.where(b <= 0, 2, np.where(a <= 0, 3, shape))
    return shape, x


def bilevel_k_star(alpha: float, p1: float, p2: float) -> BilevelOptimum:
    """The optimum of the bi-level curve; see :class:`BilevelOptimum`. Needs
    ``0 <= alpha <= 1`` and ``p1 >= 1/2 >= p2`` (easy and hard items)."""
    if not (0 <= alpha <= 1 and 0.5 <= p1 <= 1 and 0 <= p2 <= 0.5):
        raise ValueError(f"bi-level model needs 0 <= alpha <= 1, p1 >= 1/2 >= p2; "
                         f"got alpha={alpha}, p1={p1}, p2={p2}")
    code, x = (v.item() for v in _bilevel_shape(alpha, p1, p2))
    shape = SHAPES[code]
    t = (1 - 2 * p2) * p2 * (1 - p2) / max((2 * p1 - 1) * p1 * (1 - p1), 1e-300)
    interior = shape in ("inverse-U", "U")
    k_exact = 2 * math.ceil(x) - 1 if interior else (math.inf if shape == "increasing" else 1)
    closed = 2 * round((2 * x - 1) / 2) + 1 if interior else None
    return BilevelOptimum(shape, "argmin" if shape == "U" else "argmax", float(k_exact),
                          closed, float(x) if interior else None, t / (1 + t))


@dataclass(frozen=True)
class KStar:
    """The K that maximises (or, for a U-shaped curve, minimises) a fitted accuracy curve
    over the integer range ``k_range``, with a ``level`` interval ``[lo, hi]``."""

    value: int
    lo: int | None
    hi: int | None
    kind: str
    level: float
    k_range: tuple[int, int]
    at_boundary: bool
    interval_method: str
    closed_form: int | None = None

    def to_dict(self) -> dict:
        return {**self.__dict__, "k_range": list(self.k_range)}


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(stats.norm.ppf(0.5 + level / 2))


def k_grid(k_range) -> np.ndarray:
    lo, hi = (int(v) for v in k_range)
    if not 1 <= lo <= hi:
        raise ValueError(f"k_range must be 1 <= lo <= hi, got {k_range!r}")
    return np.arange(lo, hi + 1)


def curve_kind(curve: np.ndarray, tol: float = 1e-9) -> str:
    """``argmin`` when the curve dips inside the range and peaks (or plateaus) at an end,
    i.e. a U shape; else ``argmax``."""
    i_min = int(np.argmin(curve))
    inner_min = 0 < i_min < curve.size - 1 and curve[i_min] < min(curve[0], curve[-1]) - tol
    return "argmin" if inner_min and max(curve[0], curve[-1]) >= curve.max() - tol else "argmax"


def _best_index(curves: np.ndarray, kind: str, tol: float = 1e-9) -> np.ndarray:
    """First K within ``tol`` of the best value (so a saturated plateau counts as reached)."""
    best = curves.max(axis=-1, keepdims=True) if kind == "argmax" else \
        curves.min(axis=-1, keepdims=True)
    return np.argmax(np.abs(curves - best) <= tol, axis=-1)


def k_star_from_curves(ks, curve, replicates, kind, level, how) -> KStar:
    """K* of ``curve`` over ``ks`` and a percentile interval from replicate curves; it is
    ``at_boundary`` when the best value is also reached at an end of the range."""
    i = int(_best_index(curve, kind))
    value = int(ks[i])
    ends = _best_index(curve[::-1], kind) == 0 or i == 0
    lo = hi = None
    if replicates is not None and len(replicates):
        draws = ks[_best_index(np.asarray(replicates), kind)]
        lo, hi = (int(v) for v in np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2],
                                              method="inverted_cdf"))
    return KStar(value, lo, hi, kind, level, (int(ks[0]), int(ks[-1])), bool(ends), how)


class ScalingFit(ABC):
    """Common interface of the fitted laws (statsmodels-style results, frozen). The
    default ``conf_int`` is the normal approximation ``params +- z stderr`` within
    ``_bounds``."""

    model: str
    params: dict
    stderr: dict
    k_star: KStar
    level: float
    _bounds: dict = {}

    def conf_int(self, level: float = 0.95) -> dict:
        """Parameter name -> (lo, hi)."""
        z = _z(level)
        return {k: (np.maximum(v - z * self.stderr[k], self._bounds.get(k, (-np.inf,))[0]),
                    np.minimum(v + z * self.stderr[k], self._bounds.get(k, (0, np.inf))[1]))
                for k, v in self.params.items()}

    @abstractmethod
    def predict(self, ks, level: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted accuracy at ``ks`` with a ``level`` band: ``(mean, lo, hi)``."""

    def _band(self, mean, sd, level):
        z = _z(self.level if level is None else level)
        return mean, np.clip(mean - z * sd, 0, 1), np.clip(mean + z * sd, 0, 1)

    def summary(self) -> str:
        ks, ci = self.k_star, self.conf_int(self.level)
        lines = [f"{self.model} fit ({self._describe()})"]
        for name, value in self.params.items():
            if np.ndim(value):
                lines.append(f"  {name:>10}: median {np.median(value):.4g} over {np.size(value)}"
                             " queries")
            else:
                lo, hi = ci[name]
                lines.append(f"  {name:>10} = {value:.4f}  (se {self.stderr[name]:.4f}, "
                             f"{self.level:.0%} CI [{lo:.4f}, {hi:.4f}])")
        if ks is None:
            lines.append("  K*: none (the fitted curve is monotone)")
            return "\n".join(lines)
        lines.append(f"  K* ({ks.kind} over K in {list(ks.k_range)}) = {ks.value}, "
                     f"{ks.level:.0%} interval " + (f"[{ks.lo}, {ks.hi}]" if ks.lo is not None
                                                    else "n/a")
                     + (f", closed form {ks.closed_form}" if ks.closed_form is not None else "")
                     + (" (at the range boundary)" if ks.at_boundary else ""))
        return "\n".join(lines)

    def _describe(self) -> str:
        return ""

    def to_dict(self) -> dict:
        def plain(v):
            return np.asarray(v).tolist() if np.ndim(v) else (None if v is None else float(v))
        return {"model": self.model, "params": {k: plain(v) for k, v in self.params.items()},
                "stderr": {k: plain(v) for k, v in self.stderr.items()},
                "conf_int": {k: [plain(a), plain(b)] for k, (a, b) in
                             self.conf_int(self.level).items()},
                "level": self.level, "k_star": None if self.k_star is None else self.k_star.to_dict(),
                **self._extra_dict()}

    def _extra_dict(self) -> dict:
        return {}


def _check_curve(ks, acc, stderr):
    kk = check_ks(ks)
    y = np.asarray(acc, dtype=float)
    if y.shape != kk.shape or np.any(~np.isfinite(y)) or np.any((y < 0) | (y > 1)):
        raise ValueError("acc must be finite accuracies in [0, 1], one per K")
    if stderr is None:
        return kk, y, np.ones_like(y), False
    se = np.asarray(stderr, dtype=float)
    if se.shape != y.shape or np.any(~np.isfinite(se)) or np.any(se < 0):
        raise ValueError("stderr must be finite and >= 0, one per K")
    return kk, y, np.maximum(se, 1e-4), True  # floor: no point may dominate the fit


@dataclass(frozen=True)
class BilevelFit(ScalingFit):
    """Weighted least-squares fit of the bi-level model (see module docstring).

    With ``stderr`` given the weights are absolute (``cov = (J'WJ)^-1``); without, the
    residual variance scales the covariance (NaN where a direction is not identified, e.g.
    ``p1 + p2 = 1``, where ``alpha I(p) + (1-alpha)(1-I(p))`` is a family of equal curves).
    ``k_star`` is the exact argmax (argmin for a U shape) of the fitted curve over
    ``k_range``, its interval a parametric bootstrap of the exact optimum under
    ``N(theta, cov)``; ``theory`` holds the closed forms.
    """

    params: dict
    stderr: dict
    cov: np.ndarray
    ks: np.ndarray
    acc: np.ndarray
    sigma: np.ndarray
    rss: float
    level: float
    k_star: KStar | None  # None when the fitted curve is monotone (p1 or p2 at 1/2)
    theory: BilevelOptimum
    model: str = "bilevel"

    @property
    def shape(self) -> str:
        return self.theory.shape

    def _theta(self):
        return np.array([self.params["alpha"], self.params["p1"], self.params["p2"]])

    _bounds = {"alpha": (0, 1), "p1": (0.5, 1), "p2": (0, 0.5)}

    def predict(self, ks, level: float | None = None):
        kk = check_ks(ks)
        mean = bilevel_curve(*self._theta(), kk)
        _z(self.level if level is None else level)  # a bad level is an error even without a band
        if not self.band_estimable:
            return mean, np.full(kk.size, np.nan), np.full(kk.size, np.nan)
        jac = _bilevel_jac(self._theta(), kk)
        sd = np.sqrt(np.einsum("ki,ij,kj->k", jac, self.cov, jac))
        return self._band(mean, sd, level)

    @property
    def band_estimable(self) -> bool:
        """False when the covariance is not identified (NaN), a parameter sits on its bound
        (the normal approximation needs an interior optimum) or a standard error exceeds
        1/2 (the band would only say "somewhere in [0, 1]"): the band is then NaN, written
        as null and not drawn."""
        se = np.array(list(self.stderr.values()))
        at_bound = any(min(abs(v - a), abs(v - b)) <= _HALF_TOL for v, (a, b) in
                       ((self.params[k], self._bounds[k]) for k in self._bounds))
        return bool(np.all(np.isfinite(self.cov)) and np.all(se <= 0.5) and not at_bound)

    def _describe(self) -> str:
        return f"{self.theory.shape}, {self.ks.size} points, rss {self.rss:.3g}"

    def _extra_dict(self) -> dict:
        return {"shape": self.shape, "theory": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in self.theory.__dict__.items()},
                "rss": self.rss, "n_points": int(self.ks.size)}


def _bilevel_jac(theta, ks) -> np.ndarray:
    alpha, p1, p2 = theta
    return np.column_stack([binary_vote(p1, ks) - binary_vote(p2, ks),
                            alpha * _binary_vote_dp(p1, ks), (1 - alpha) * _binary_vote_dp(p2, ks)])


def _bilevel_best_k(alpha, p1, p2, kind, k_lo, k_hi) -> np.ndarray:
    """Exact argmax/argmin of bi-level curves over ``[k_lo, k_hi]`` (vectorised): the
    interior optimum ``2 ceil(x*) - 1`` when the shape has one, else the better end."""
    code, x = _bilevel_shape(alpha, p1, p2)
    ends = bilevel_curve(alpha, p1, p2, k_lo), bilevel_curve(alpha, p1, p2, k_hi)
    better_hi = ends[1] > ends[0] if kind == "argmax" else ends[1] < ends[0]
    best = np.where(better_hi, k_hi, k_lo).astype(float)
    inner = code == (0 if kind == "argmax" else 1)
    with np.errstate(invalid="ignore"):
        k_in = np.clip(2 * np.ceil(np.where(inner, x, 1.0)) - 1, k_lo, k_hi)
    return np.where(inner, k_in, best).astype(int)


def fit_bilevel(ks, acc, stderr=None, *, level: float = 0.95, k_range=K_RANGE,
                n_draws: int = 2000, seed: int = 0) -> BilevelFit:
    """Fit ``(alpha, p1, p2)`` with ``p1 >= 1/2 >= p2`` to an accuracy curve (see
    :class:`BilevelFit`). Start: a grid over ``(p1, p2)`` with ``alpha`` solved in closed
    form (the model is linear in it); then bounded least squares with the exact Jacobian."""
    kk, y, se, absolute = _check_curve(ks, acc, stderr)
    w = 1.0 / se
    grid1, grid2 = np.linspace(0.51, 0.99, 25), np.linspace(0.01, 0.49, 25)
    i1, i2 = binary_vote(grid1[:, None], kk), binary_vote(grid2[:, None], kk)
    diff = (i1[:, None, :] - i2[None, :, :]) * w
    resid0 = (y - i2[None, :, :]) * w
    alpha0 = np.clip((diff * resid0).sum(-1) / np.maximum((diff ** 2).sum(-1), 1e-300), 0, 1)
    loss0 = ((resid0 - alpha0[..., None] * diff) ** 2).sum(-1)
    best = None
    for flat in np.argsort(loss0, axis=None)[:4]:
        a, b = np.unravel_index(flat, loss0.shape)
        res = optimize.least_squares(
            lambda t: (bilevel_curve(*t, kk) - y) * w, [alpha0[a, b], grid1[a], grid2[b]],
            jac=lambda t: _bilevel_jac(t, kk) * w[:, None], bounds=([0, 0.5, 0], [1, 1, 0.5]),
            method="trf", x_scale="jac")
        if best is None or res.cost < best.cost:
            best = res
    theta = best.x
    rss = float(np.sum((bilevel_curve(*theta, kk) - y) ** 2 * w ** 2))
    scale = 1.0 if absolute else (rss / (kk.size - 3) if kk.size > 3 else math.nan)
    cov = safe_inverse(best.jac.T @ best.jac) * scale
    names = ("alpha", "p1", "p2")
    params = {n: float(v) for n, v in zip(names, theta)}
    stderr_d = {n: float(np.sqrt(cov[i, i])) for i, n in enumerate(names)}
    z = _z(level)
    at_half = [abs(theta[i] - 0.5) <= max(_HALF_TOL, z * stderr_d[n] if math.isfinite(stderr_d[n]) else 0.0)
               for i, n in ((1, "p1"), (2, "p2"))]
    if any(at_half):
        # p1 or p2 indistinguishable from 1/2: I_K(1/2) = 1/2 for every K, so the curve is
        # monotone (rising with p2 = 1/2, falling with p1 = 1/2) and has no interior optimum.
        theory = BilevelOptimum("monotone", "argmax", math.nan, None, None, math.nan)
        return BilevelFit(params, stderr_d, cov, kk, y, se, rss, level, None, theory)  # type: ignore[arg-type]
    theory = bilevel_k_star(*theta)
    grid = k_grid(k_range)
    kind = theory.kind
    value = int(_bilevel_best_k(*theta, kind, grid[0], grid[-1]))
    lo = hi = None
    if np.all(np.isfinite(cov)):
        draws = np.random.default_rng(seed).multivariate_normal(theta, cov, size=n_draws,
                                                                 method="eigh")
        draws = np.clip(draws, [0, 0.5, 0], [1, 1, 0.5])
        best_k = _bilevel_best_k(draws[:, 0], draws[:, 1], draws[:, 2], kind, grid[0], grid[-1])
        lo, hi = (int(v) for v in np.quantile(best_k, [0.5 - level / 2, 0.5 + level / 2],
                                              method="inverted_cdf"))
    k_star = KStar(value, lo, hi, kind, level, (int(grid[0]), int(grid[-1])),
                   value in (grid[0], grid[-1]), "parametric bootstrap", theory.k_closed_form)
    return BilevelFit(params, stderr_d, cov, kk, y, se, rss, level, k_star, theory)


def safe_inverse(info: np.ndarray) -> np.ndarray:
    """Inverse of an information matrix; NaN where a direction is not identified."""
    vals, vecs = np.linalg.eigh(info)
    if vals.min() <= 1e-10 * max(vals.max(), 1e-300):
        return np.full(info.shape, math.nan)
    return (vecs / vals) @ vecs.T


@dataclass(frozen=True)
class MixtureFit(ScalingFit):
    """Multi-level generalisation of the bi-level model (our extension of Chen et al.).

    ``F(K) = sum_l w_l I_K(p_l)``: the queries' per-call accuracies form a distribution,
    approximated on a grid ``p_l``; ``w >= 0`` with ``sum w = 1`` is fitted by weighted
    non-negative least squares (the sum constraint as a heavily weighted extra row). NNLS
    solutions are sparse, so the fit picks its own number of levels; two atoms at
    ``p1 > 1/2 > p2`` are the bi-level model. ``limit = sum_{p_l > 1/2} w_l + w_{1/2} / 2``
    is ``F(infinity)``. Bands, parameter intervals and the K* interval come from a
    parametric bootstrap (data + N(0, stderr^2), or the residual s.d. without stderr).
    """

    params: dict
    stderr: dict
    grid: np.ndarray
    weights: np.ndarray
    boot_weights: np.ndarray
    ks: np.ndarray
    acc: np.ndarray
    rss: float
    level: float
    k_star: KStar
    model: str = "mixture"

    def conf_int(self, level: float = 0.95) -> dict:
        q = [0.5 - level / 2, 0.5 + level / 2]
        limits = _mixture_limit(self.grid, self.boot_weights)
        out = {"limit": tuple(float(v) for v in np.quantile(limits, q))}
        for name in self.params:
            if name.startswith("w@"):
                col = np.argmin(np.abs(self.grid - float(name[2:])))
                out[name] = tuple(float(v) for v in np.quantile(self.boot_weights[:, col], q))
        return out

    def predict(self, ks, level: float | None = None):
        kk = check_ks(ks)
        design = binary_vote(self.grid[None, :], kk[:, None])
        level = self.level if level is None else level
        reps = self.boot_weights @ design.T
        lo, hi = np.quantile(reps, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        return design @ self.weights, lo, hi

    def _describe(self) -> str:
        levels = int(np.sum(self.weights > 1e-6))
        return f"{levels} levels, {self.ks.size} points, rss {self.rss:.3g}"

    def _extra_dict(self) -> dict:
        return {"rss": self.rss, "n_points": int(self.ks.size), "n_levels":
                int(np.sum(self.weights > 1e-6))}


def _mixture_limit(grid, weights):
    return weights @ np.where(grid > 0.5, 1.0, np.where(grid == 0.5, 0.5, 0.0))


def _nnls_simplex(design, y, w):
    """min ||w (design x - y)||, x >= 0, sum x = 1 (the constraint as a weighted row)."""
    big = 1e3 * max(float(np.max(w)), 1.0)
    a = np.vstack([design * w[:, None], np.full(design.shape[1], big)])
    return optimize.nnls(a, np.append(y * w, big), maxiter=50 * design.shape[1])[0]


def fit_mixture(ks, acc, stderr=None, *, grid=None, level: float = 0.95, k_range=K_RANGE,
                n_boot: int = 200, seed: int = 0) -> MixtureFit:
    """Fit the multi-level mixture (see :class:`MixtureFit`); ``grid`` defaults to per-call
    accuracies 0.005, 0.015, ..., 0.995 and 0.5."""
    kk, y, se, absolute = _check_curve(ks, acc, stderr)
    p = np.unique(np.append(np.linspace(0.005, 0.995, 100), 0.5)) if grid is None else \
        np.asarray(grid, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError("grid must be per-call accuracies in [0, 1]")
    design = binary_vote(p[None, :], kk[:, None])
    w = 1.0 / se
    weights = _nnls_simplex(design, y, w)
    fitted = design @ weights
    rss = float(np.sum(((fitted - y) * w) ** 2))
    noise = se if absolute else np.full(y.size, math.sqrt(rss / max(y.size - 1, 1)))
    rng = np.random.default_rng(seed)
    boot = np.array([_nnls_simplex(design, np.clip(fitted + rng.normal(0, noise), 0, 1), w)
                     for _ in range(n_boot)])
    params = {f"w@{v:.3f}": float(x) for v, x in zip(p, weights) if x > 1e-6}
    stderr_d = {name: float(np.std(boot[:, np.argmin(np.abs(p - float(name[2:])))]))
                for name in params}
    params["limit"] = float(_mixture_limit(p, weights))
    stderr_d["limit"] = float(np.std(_mixture_limit(p, boot)))
    kgrid = k_grid(k_range)
    full = binary_vote(p[None, :], kgrid[:, None])
    curve = full @ weights
    k_star = k_star_from_curves(kgrid, curve, boot @ full.T, curve_kind(curve), level,
                                 "parametric bootstrap")
    return MixtureFit(params, stderr_d, p, weights, boot, kk, y, rss, level, k_star)


def bootstrap_means(curves: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of the rows of ``curves``."""
    n = curves.shape[0]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return counts @ curves / n
