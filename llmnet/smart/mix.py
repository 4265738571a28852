"""SMART's model mix: split the unprofiled items over several models at least cost.

Jo & Trummer 2024 (arXiv 2403.13835), "model mix". After profiling ``n`` of ``N`` items
(whose outputs are the reference's own, so they agree), the remaining ``N - n`` items must
agree with the reference on a share of at least

    a' = (1 - delta - n/N) * N / (N - n)                                  (remaining target)

for the whole output to reach ``1 - delta``. Each model ``m`` gets an option
``(confidence c_m, lower bound L_m)``: a candidate chooses ``c`` from
{0.95, 0.96, 0.97, 0.98, 0.99} (``linspace(gamma, 1, 5)`` without 1) with ``L_m`` its
Clopper-Pearson lower bound at that confidence, or ``(1.0, 0.0)`` (use it with no credit);
the reference is ``(1, 1)``. Every combination whose confidences multiply to at least
``gamma`` gives the LP

    min sum_m x_m C_m   s.t.   sum_m x_m L_m >= a',   sum_m x_m = 1,   x >= 0,

and the cheapest feasible combination wins; the remaining items are split by ``x``.

The paper enumerates the combinations and solves one LP each (it calls the whole a MILP).
``solve_mix`` offers two exact solvers of that problem:

``solver="vertices"`` (the default)
    The LP has one equality and one inequality row, so an optimal basic solution uses at
    most two models: one with ``L_m >= a'``, or two with ``L_i < a' < L_j`` mixed to hit
    ``a'`` exactly. Enumerating every option pair whose confidences (times the best
    confidence of every unused model) still multiply to ``gamma`` covers every
    combination's optimum; vectorised, well under a millisecond. For simulations run
    thousands of times.

``solver="milp"``
    One MILP (scipy's HiGHS): binaries ``z_mo`` pick one option per model,
    ``sum_o z_mo log c_o >= log gamma`` is the product rule, and ``y_mo <= z_mo`` with
    ``x_m = sum_o y_mo`` linearises ``x_m L_m(o)``. About 5-15 ms a call. HiGHS stops at
    an *absolute* gap of 1e-6, which at dollar costs per item (~1e-5) accepts almost any
    feasible mix; so costs are divided by the cheapest positive one before solving (the
    objective is then >= 1 and the gap relative), and the LP of the chosen options is
    re-solved exactly at its vertices.

Both agree with a brute-force enumeration of combinations and a fine grid of shares
(tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from llmnet.errors import LlmnetError

__all__ = ["MixOption", "MixSolution", "remaining_target", "paper_levels", "solve_mix", "split_items"]

_LOG_TOL = 1e-12


@dataclass(frozen=True)
class MixOption:
    """One way to use a model in the mix: at ``confidence``, its agreement is >= ``lower``."""

    confidence: float
    lower: float


@dataclass(frozen=True)
class MixSolution:
    """The cheapest mix: per model its share, the option it was credited with, the cost."""

    shares: Mapping[str, float]
    options: Mapping[str, MixOption]
    cost_per_item: float
    target: float

    @property
    def confidence(self) -> float:
        """Product of the chosen options' confidences (the paper's joint confidence)."""
        return math.prod(o.confidence for o in self.options.values())

    @property
    def guaranteed_agreement(self) -> float:
        """``sum_m x_m L_m``: the agreement share the mix is credited with."""
        return sum(self.shares[m] * self.options[m].lower for m in self.shares)

    def to_dict(self) -> dict:
        return {
            "shares": dict(self.shares),
            "options": {m: {"confidence": o.confidence, "lower": o.lower} for m, o in self.options.items()},
            "cost_per_item": self.cost_per_item,
            "target": self.target,
            "confidence": self.confidence,
        }


def remaining_target(delta: float, profiled: int, n_items: int) -> float:
    """``a' = (1 - delta - n/N) N / (N - n)``: agreement the unprofiled items still need.

    The ``n`` profiled items already carry the reference's outputs; may be <= 0 (any
    split will do) and is at most ``1 - delta``.
    """
    if not 0 <= profiled < n_items:
        raise LlmnetError(f"need 0 <= profiled < n_items, got profiled={profiled}, n_items={n_items}")
    return (1.0 - delta - profiled / n_items) * n_items / (n_items - profiled)


def paper_levels(gamma: float) -> tuple[float, ...]:
    """The per-candidate confidences of the paper: five steps from ``gamma`` towards 1."""
    return tuple(float(c) for c in np.linspace(gamma, 1.0, num=5, endpoint=False))


def solve_mix(
    costs: Mapping[str, float],
    options: Mapping[str, Sequence[MixOption]],
    target: float,
    gamma: float,
    solver: str = "vertices",
) -> MixSolution:
    """Cheapest shares ``x`` over ``costs``' models, one option per model (module docstring).

    ``costs``: cost per item of each model; ``options``: the options each model may use
    (a model with a single ``MixOption(1.0, 1.0)`` plays the reference); ``solver``:
    ``"milp"`` or ``"vertices"``. Raises ``LlmnetError`` when no combination reaches
    ``target``.
    """
    names = list(costs)
    if not names:
        raise LlmnetError("solve_mix needs at least one model")
    missing = [m for m in names if not options.get(m)]
    if missing:
        raise LlmnetError(f"no mix options for model(s) {missing}")
    pairs = [(m, o) for m in names for o in options[m]]
    for _, o in pairs:
        if not (0.0 < o.confidence <= 1.0 and 0.0 <= o.lower <= 1.0):
            raise LlmnetError(f"bad mix option {o!r}: need 0 < confidence <= 1 and 0 <= lower <= 1")
    if solver == "milp":
        return _solve_milp(names, costs, pairs, target, gamma)
    if solver == "vertices":
        return _solve_vertices(names, costs, pairs, target, gamma)
    raise LlmnetError(f"unknown mix solver {solver!r} (known: milp, vertices)")


def _solution(names, costs, shares: dict[str, float], chosen: dict[str, MixOption], target: float) -> MixSolution:
    total = sum(shares.values())
    shares = {m: float(shares.get(m, 0.0) / total) for m in names}
    cost = float(sum(shares[m] * costs[m] for m in names))
    return MixSolution(shares=shares, options=chosen, cost_per_item=cost, target=float(target))


def _no_mix(target: float, gamma: float) -> LlmnetError:
    return LlmnetError(f"no model mix reaches the remaining target {target:.4f} at confidence {gamma}")


def _solve_milp(names, costs, pairs, target: float, gamma: float) -> MixSolution:
    n_y = len(pairs)
    positive = [c for c in costs.values() if c > 0]
    scale = min(positive) if positive else 1.0  # HiGHS's gap is absolute: make the objective >= 1
    cost_y = np.array([costs[m] / scale for m, _ in pairs], dtype=float)
    lower_y = np.array([o.lower for _, o in pairs])
    logc_y = np.array([math.log(o.confidence) for _, o in pairs])
    # variables: y (n_y continuous shares), then z (n_y binaries)
    c = np.concatenate([cost_y, np.zeros(n_y)])
    rows, lb, ub = [], [], []

    def add(row_y, row_z, lo, hi):
        rows.append(np.concatenate([row_y, row_z]))
        lb.append(lo)
        ub.append(hi)

    zero = np.zeros(n_y)
    add(np.ones(n_y), zero, 1.0, 1.0)  # sum x = 1
    add(lower_y, zero, target, np.inf)  # sum x L >= a'
    add(zero, logc_y, math.log(gamma) - _LOG_TOL, np.inf)  # prod c >= gamma
    for m in names:
        member = np.array([mm == m for mm, _ in pairs], dtype=float)
        add(zero, member, 1.0, 1.0)  # one option per model
    eye = np.eye(n_y)
    for i in range(n_y):
        add(eye[i], -eye[i], -np.inf, 0.0)  # y <= z
    integrality = np.concatenate([np.zeros(n_y), np.ones(n_y)])
    res = milp(
        c,
        constraints=LinearConstraint(np.array(rows), np.array(lb), np.array(ub)),
        integrality=integrality,
        bounds=Bounds(np.zeros(2 * n_y), np.ones(2 * n_y)),
        options={"mip_rel_gap": 1e-9},
    )
    if res.status != 0 or res.x is None:
        raise _no_mix(target, gamma)
    z = res.x[n_y:]
    chosen = [(m, o) for i, (m, o) in enumerate(pairs) if z[i] > 0.5]
    # the chosen combination's LP, solved exactly (its confidences already meet gamma)
    return _solve_vertices(names, costs, chosen, target, math.prod(o.confidence for _, o in chosen))


def _solve_vertices(names, costs, pairs, target: float, gamma: float) -> MixSolution:
    # Unused models take their most confident option; a used model's option costs
    # log(best_c) - log(c) of the log-confidence budget log(prod best_c) - log(gamma).
    best = {m: max((o for mm, o in pairs if mm == m), key=lambda o: o.confidence) for m in names}
    budget = sum(math.log(o.confidence) for o in best.values()) - math.log(gamma) + _LOG_TOL
    model = np.array([names.index(m) for m, _ in pairs])
    cost = np.array([costs[m] for m, _ in pairs], dtype=float)
    low = np.array([o.lower for _, o in pairs])
    spend = np.array([math.log(best[m].confidence) - math.log(o.confidence) for m, o in pairs])
    if budget < 0:
        raise _no_mix(target, gamma)
    # single models: x_m = 1
    single = (low >= target) & (spend <= budget)
    # pairs (i cheap and below target, j above it): x_j = (a' - L_i) / (L_j - L_i)
    i, j = np.meshgrid(np.arange(len(pairs)), np.arange(len(pairs)), indexing="ij")
    ok = (model[i] != model[j]) & (low[i] < target) & (low[j] >= target) & (spend[i] + spend[j] <= budget)
    xj = np.where(ok, (target - low[i]) / np.where(ok, low[j] - low[i], 1.0), 1.0)
    pair_cost = np.where(ok, cost[i] + xj * (cost[j] - cost[i]), np.inf)
    single_cost = np.where(single, cost, np.inf)
    if not np.isfinite(single_cost).any() and not np.isfinite(pair_cost).any():
        raise _no_mix(target, gamma)
    chosen = dict(best)
    if single_cost.min() <= pair_cost.min():
        k = int(np.argmin(single_cost))
        chosen[pairs[k][0]] = pairs[k][1]
        return _solution(names, costs, {pairs[k][0]: 1.0}, chosen, target)
    a, b = np.unravel_index(int(np.argmin(pair_cost)), pair_cost.shape)
    chosen[pairs[a][0]], chosen[pairs[b][0]] = pairs[a][1], pairs[b][1]
    share_b = float(xj[a, b])
    return _solution(names, costs, {pairs[a][0]: 1.0 - share_b, pairs[b][0]: share_b}, chosen, target)


def split_items(n_items: int, shares: Mapping[str, float], lowers: Mapping[str, float]) -> dict[str, int]:
    """Integer item counts from shares, never losing credited agreement to rounding.

    Each model gets ``floor(x_m n)``; the few left over go to the model with the highest
    ``L_m`` among those with a positive share (the reference, ``L = 1``, when it is in
    the mix). The leftovers are the fractional parts, so ``sum_m count_m L_m >=
    n sum_m x_m L_m``: the rounded split still meets the remaining target.
    """
    if n_items < 0:
        raise LlmnetError("cannot split a negative number of items")
    counts = {m: int(math.floor(x * n_items + 1e-9)) for m, x in shares.items()}
    left = n_items - sum(counts.values())
    if left < 0:
        raise LlmnetError("shares sum to more than one")
    used = [m for m, x in shares.items() if x > 0] or list(shares)
    counts[max(used, key=lambda m: lowers[m])] += left
    return counts
