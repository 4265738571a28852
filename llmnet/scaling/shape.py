"""The shape of an accuracy-vs-K curve and its K*, decided against paired bootstrap bands.

Chen et al. (arXiv 2403.02419) show Vote accuracy can be non-monotone in K (inverse-U or
U). A point estimate of the curve always has some wiggle, so a shape is only called
when the data support it: every comparison below is a difference of two points of the
*same* curve, and its 95% band comes from replicate curves (a bootstrap over queries, so
the two points are paired: they share the resampled queries; or replicates of a fitted
law). A difference whose band contains 0 is noise. The highest and lowest points are
picked among all Ks, so their bands are Bonferroni-widened (level ``1 - (1 - level) / n``).

``shape`` (:func:`curve_shape`), with P the highest point, T the lowest, and "above"
meaning a difference whose band lies above 0:

* ``inverse-U``: P is above both ends; ``U``: both ends are above T (the larger of the
  two effects wins when a curve is both);
* ``increasing``: the last point is above the first (and no significant turn);
  ``decreasing``: the first is above the last;
* ``flat``: none of these.

``k_star`` (:func:`k_star_band`): the smallest K whose accuracy is within the 95% paired
band of the best (the band of ``acc(K) - acc(argmax)`` over the replicates reaches 0): the
cheapest K that is as good as any. Paired differences are precise, so on a curve that
keeps creeping up (every query gaining a little) K* can sit at the end of the range: that
is what the data say. ``lo``/``hi`` are percentiles, over the replicates, of the first K
within the same margin of that replicate's own best (the margin: the chosen K's gap to
the best or its band's half-width, whichever is larger), widened when needed so that
``lo <= value <= hi`` always holds; the argmax (the first K at the highest point estimate) is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("increasing", "decreasing", "inverse-U", "U", "flat")


def _band(reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.quantile(reps, [0.5 - level / 2, 0.5 + level / 2], axis=0))  # type: ignore[return-value]


def _above(diff: float, reps: np.ndarray, level: float) -> bool:
    """Is ``diff`` (with replicate differences ``reps``) significantly above 0?"""
    if not diff > 0:
        return False
    if reps is None or len(reps) == 0:
        return True
    lo, _ = _band(np.asarray(reps), level)
    return bool(lo > 0)


def curve_shape(curve, replicates=None, level: float = 0.95, tol: float = 1e-9) -> str:
    """One of :data:`SHAPES` for ``curve`` (see the module docstring). ``replicates`` is a
    ``(B, len(curve))`` array of paired replicate curves; without it any difference larger
    than ``tol`` counts."""
    y = np.asarray(curve, dtype=float)
    reps = None if replicates is None else np.asarray(replicates, dtype=float)
    if y.size < 2:
        return "flat"

    picked = 1 - (1 - level) / y.size  # the top / low point is picked among len(curve): Bonferroni

    def above(i: int, j: int, lvl: float = level) -> bool:
        d = y[i] - y[j]
        if d <= tol:
            return False
        return _above(d, None if reps is None else reps[:, i] - reps[:, j], lvl)

    top = int(np.argmax(y))
    low = int(np.argmin(y))
    first, last = 0, y.size - 1
    peak = above(top, first, picked) and above(top, last, picked)
    dip = above(first, low, picked) and above(last, low, picked)
    if peak and dip:
        return "inverse-U" if min(y[top] - y[first], y[top] - y[last]) >= \
            min(y[first] - y[low], y[last] - y[low]) else "U"
    if peak:
        return "inverse-U"
    if dip:
        return "U"
    if above(last, first):
        return "increasing"
    if above(first, last):
        return "decreasing"
    return "flat"


@dataclass(frozen=True)
class KStarBand:
    """The cheapest K as good as any (see the module docstring), with its interval."""

    value: int
    lo: int
    hi: int
    argmax: int
    level: float
    rule: str = "smallest K whose accuracy is within the paired band of the best"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def k_star_band(ks, curve, replicates=None, level: float = 0.95, tol: float = 1e-9) -> KStarBand:
    """:class:`KStarBand` of ``curve`` over ``ks`` from paired replicate curves."""
    kk = np.asarray(ks)
    y = np.asarray(curve, dtype=float)
    best = int(np.argmax(y >= y.max() - tol))
    reps = None if replicates is None or len(replicates) == 0 else np.asarray(replicates, dtype=float)
    if reps is None:
        value = int(kk[int(np.argmax(y >= y[best] - tol))])
        return KStarBand(value, value, value, int(kk[best]), level)
    lower, upper = _band(reps - reps[:, [best]], level)  # band of acc(K) - acc(best), paired
    i = int(np.argmax((upper >= 0) | (y >= y[best] - tol)))
    value = int(kk[i])
    margin = max(float(y[best] - y[i]), float(upper[i] - lower[i]) / 2, tol)
    first = np.argmax(reps >= reps.max(axis=1, keepdims=True) - margin, axis=1)
    lo_k, hi_k = (int(v) for v in np.quantile(kk[first], [0.5 - level / 2, 0.5 + level / 2],
                                              method="inverted_cdf"))
    return KStarBand(value, min(lo_k, value), max(hi_k, value), int(kk[best]), level)


def paired_bootstrap(curves: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` resamples of the rows (queries) of ``curves``: ``(n_boot, n_ks)``;
    each resample is shared by every K, so differences between Ks are paired."""
    curves = np.asarray(curves, dtype=float)
    n = curves.shape[0]
    if n < 2:
        return np.repeat(curves.mean(axis=0, keepdims=True), n_boot, axis=0)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return counts @ curves / n


__all__ = ["SHAPES", "KStarBand", "curve_shape", "k_star_band", "paired_bootstrap"]
