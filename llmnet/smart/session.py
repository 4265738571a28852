"""SMART (Jo & Trummer 2024, arXiv 2403.13835) as a driver-agnostic state machine.

Goal: answer ``N`` items so that, with probability at least ``gamma``, the share of
outputs that differ from the reference model's is at most ``delta``, at least cost.

Profiling (paper, "profiling phase"). Items are taken in order. Each runs the reference
and every *unknown* candidate cheaper than the cheapest *satisfied* one (models sorted by
price; the reference starts satisfied). Every ``check_every`` = 10 items, each candidate
that ran gets an interval from ``s`` agreements in ``n`` items: upper ``U < 1 - delta``
marks it invalid, lower ``L >= 1 - delta`` satisfied. Profiling stops when the cheapest
non-invalid model is satisfied (or all items are profiled).

Early termination (paper, "optimizing profiling overheads"), from ``n >= 100`` at every
check: with ``R = N - n`` items left, ``U`` the unknown candidates still profiled (by
price), ``c_m`` per-item costs, ``c_sat`` that of the cheapest satisfied model and
``P_m(k)`` the probability that ``m`` becomes satisfied within ``k`` more items
(``llmnet.smart.bounds.reach_probability``),

    E[C](k) = k (c_ref + sum_{m in U} c_m)
              + sum_i [prod_{j<i} (1 - P_j)] P_i (R - k) c_i
              + [prod_j (1 - P_j)] (R - k) c_sat ,

and if ``min_{k in {1, 2, 4, ...}, k < R} E[C](k) >= c_sat R`` every candidate in ``U`` is
marked invalid (more profiling is not expected to pay for itself).

Application: the cheapest satisfied model answers the remaining items; or, with
``mix=True``, the model mix of ``llmnet.smart.mix`` (paper, "model mix").

Bounds. ``bound="clopper-pearson"`` is the paper: a two-sided interval at ``gamma`` per
candidate, looked at every 10 items, and in the mix per-candidate levels whose product is
at least ``gamma``. Neither is a valid guarantee: repeated looks at a fixed-n interval
accept a too-weak model far more often than ``1 - gamma``, the levels are picked after
seeing the data, and the product rule assumes independent events.

``bound="anytime"`` runs the same algorithm on ``llmnet.smart.bounds.BettingMixture``
confidence sequences, with the error ``1 - gamma`` split over the ``K`` candidates cheaper
than the reference: each candidate's lower and upper sequences err (at any time, ever)
with probability at most ``(1 - gamma)/K``. The guarantee needs only the lower sides: with
probability at least ``gamma`` every candidate's lower bound stays below its true
agreement throughout, which covers every "satisfied" mark, the data-dependent end of
profiling, and the mix, which then credits each candidate with that one lower bound (no
per-candidate level search). Failure can still come from the finite-sample luck of the
applied items themselves, which the paper does not budget for either.

Profiling for the mix (beyond the paper; ``stop_for_mix``, on by default for the anytime
bound with ``mix=True``). The paper profiles until a *single* model is settled: a candidate
whose upper bound falls below ``1 - delta`` is dropped, and profiling ends once every
cheaper candidate is dropped. With a mix that is premature: a candidate at 0.94 against a
0.96 target can never serve alone, yet every profiled item raises the lower bound the mix
credits it with and so shrinks the reference's share. So here the single-model statuses
are still kept (for reporting and ``plan(mix=False)``), but what runs and when profiling
ends follow the mix: every candidate cheaper than the reference is profiled until
crediting it with its own upper bound would save less over the remaining items than
profiling it on as many items again as so far would cost (a bound tightens appreciably
only when its sample grows by a constant factor), and profiling ends at the first
check where no further profiling is projected to make the plan cheaper: the plan's cost
if profiling stopped now, ``R c_mix(now)``, against ``k`` more items of the reference and
the profiled candidates, then ``(R - k) c_mix(k)`` (``k = 10, 20, 40, ... < R``), where
``c_mix(k)`` is the optimal mix's cost per item with each profiled candidate's counts
moved along its observed rate (``s + k s/n`` agreements in ``n + k`` items). Both rules
run at checks about 2% of the profiled items apart (every check early on), for speed.
Only anytime-valid bounds may profile on such data-dependent rules and keep their
guarantee (the confidence sequences hold at every stopping time); with Clopper-Pearson it
would add to the repeated-look problem, so the faithful variant never uses it.

Driving a session::

    session = SmartSession(N, reference, candidates, delta=0.05)
    while session.profiling:
        names = session.to_run()              # run these on the next item(s)
        session.observe({m: agrees for m in names if m != session.reference.name})
    plan = session.plan()                     # who answers the remaining items
    result = session.result(realised_agreement=...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from functools import lru_cache

import numpy as np

from llmnet.errors import LlmnetError
from llmnet.smart.bounds import DecisionTable, decision_table, get_bound, reach_probability
from llmnet.smart.mix import MixOption, paper_levels, remaining_target, solve_mix, split_items

__all__ = ["Candidate", "Status", "Check", "Decision", "SmartPlan", "SmartResult", "SmartSession"]


@dataclass(frozen=True)
class Candidate:
    """A model SMART may use: its name and expected cost per item (any currency)."""

    name: str
    cost: float


class Status(str, Enum):
    UNKNOWN = "unknown"
    SATISFIED = "satisfied"
    INVALID = "invalid"


@dataclass(frozen=True)
class Check:
    """One candidate at one check: counts so far and the status after the check."""

    item: int
    name: str
    agreements: int
    trials: int
    status: Status


@dataclass(frozen=True)
class Decision:
    """Final status of a model; ``reason``: bound, early-termination, reference, undecided."""

    name: str
    status: Status
    at_item: int | None
    reason: str


@dataclass(frozen=True)
class SmartPlan:
    """Who answers the items after profiling. Items ``[0, profiled)`` keep the reference's
    outputs; ``blocks`` cover ``[profiled, n_items)`` in item order, cheapest model first."""

    method: str  # "single", "mix" or "none" (every item was profiled)
    n_items: int
    profiled: int
    reference: str
    target: float  # agreement share the remaining items need
    counts: Mapping[str, int]
    blocks: tuple[tuple[str, int, int], ...]
    lowers: Mapping[str, float]  # lower bound each used model is credited with
    confidences: Mapping[str, float]  # level of that bound (see SmartSession.plan)
    expected_cost: float

    def model_for(self, item: int) -> str:
        """The model whose output item ``item`` gets."""
        if not 0 <= item < self.n_items:
            raise LlmnetError(f"item {item} outside 0..{self.n_items - 1}")
        for name, start, stop in self.blocks:
            if start <= item < stop:
                return name
        return self.reference

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SmartResult:
    """A finished SMART run: decisions, bounds over time, plan, costs and savings."""

    n_items: int
    delta: float
    gamma: float
    bound: str
    mix: bool
    reference: str
    lower_error: float
    upper_error: float
    profiled: int
    decisions: tuple[Decision, ...]
    history: tuple[Check, ...] = field(repr=False)
    plan: SmartPlan
    profiling_cost: float
    application_cost: float
    reference_cost: float
    realised_agreement: float | None = None

    @property
    def total_cost(self) -> float:
        return self.profiling_cost + self.application_cost

    @property
    def savings(self) -> float:
        """Reference-only cost over SMART's cost (the paper's "x times cheaper")."""
        return self.reference_cost / self.total_cost if self.total_cost > 0 else float("inf")

    @property
    def target_met(self) -> bool | None:
        """Whether the realised agreement reached ``1 - delta`` (None if not given)."""
        if self.realised_agreement is None:
            return None
        return self.realised_agreement >= 1.0 - self.delta - 1e-12

    def bounds(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(items, lower, upper)`` of candidate ``name`` at each of its checks."""
        rows = [c for c in self.history if c.name == name]
        items = np.array([c.item for c in rows], dtype=int)
        s = np.array([c.agreements for c in rows], dtype=float)
        n = np.array([c.trials for c in rows], dtype=float)
        b = get_bound(self.bound)
        return items, b.lower(s, n, self.lower_error), b.upper(s, n, self.upper_error)

    def to_dict(self, with_history: bool = False) -> dict:
        """JSON-ready; ``with_history`` adds each candidate's counts and bounds per check."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("history", "plan")}
        out["decisions"] = [{**asdict(d), "status": d.status.value} for d in self.decisions]
        out.update(plan=self.plan.to_dict(), total_cost=self.total_cost, savings=self.savings,
                   target_met=self.target_met)
        if with_history:
            out["history"] = {}
            for name in dict.fromkeys(c.name for c in self.history):
                items, lo, hi = self.bounds(name)
                agree = [c.agreements for c in self.history if c.name == name]
                out["history"][name] = {"items": items.tolist(), "agreements": agree,
                                        "lower": lo.tolist(), "upper": hi.tolist()}
        return out


@lru_cache(maxsize=100_000)
def _reach(table: DecisionTable, successes: int, trials: int, profiled: int) -> np.ndarray:
    """``P_m(k)`` for ``k = 1, 2, 4, ... < R`` (memoised: simulations revisit states)."""
    remaining = table.max_trials - profiled
    ks = 2 ** np.arange(max(int(np.ceil(np.log2(remaining))), 0))
    return reach_probability(successes, trials, ks[ks < remaining], table)


class SmartSession:
    """SMART's profiling loop as a state machine; see the module docstring.

    ``reference``: the model whose outputs define agreement; ``candidates``: the others
    (those costing as much as the reference or more are never run). ``costs`` are expected
    costs per item; costs actually paid (``observe(costs_paid=...)``) replace them in the
    early-termination arithmetic and the reported costs. ``mix_solver``: ``"vertices"`` or
    ``"milp"`` (same optimum, see ``llmnet.smart.mix``).
    """

    def __init__(
        self,
        n_items: int,
        reference: Candidate,
        candidates: Sequence[Candidate],
        *,
        delta: float = 0.05,
        gamma: float = 0.95,
        bound: str = "clopper-pearson",
        mix: bool = False,
        check_every: int = 10,
        early_termination: bool = True,
        termination_from: int = 100,
        mix_solver: str = "vertices",
        stop_for_mix: bool | None = None,
    ):
        names = [reference.name, *(c.name for c in candidates)]
        if len(set(names)) != len(names):
            raise LlmnetError(f"model names must be unique, got {names}")
        if n_items < 1 or check_every < 1:
            raise LlmnetError("n_items and check_every must be at least 1")
        if not 0.0 < delta < 1.0 or not 0.0 < gamma < 1.0:
            raise LlmnetError(f"need 0 < delta < 1 and 0 < gamma < 1, got delta={delta}, gamma={gamma}")
        if any(c.cost < 0 for c in (reference, *candidates)):
            raise LlmnetError("costs must be non-negative")
        if mix_solver not in ("milp", "vertices"):
            raise LlmnetError(f"unknown mix solver {mix_solver!r} (known: milp, vertices)")
        self.n_items = int(n_items)
        self.reference = reference
        self.delta, self.gamma = float(delta), float(gamma)
        self.bound = get_bound(bound).name
        self.mix = bool(mix)
        self.check_every = int(check_every)
        self.early_termination = bool(early_termination)
        self.termination_from = int(termination_from)
        self.mix_solver = mix_solver
        self.stop_for_mix = (self.mix and self.bound == "anytime") if stop_for_mix is None else bool(stop_for_mix)
        # price order; the reference goes before candidates of equal cost
        self._order = sorted([reference, *candidates], key=lambda c: (c.cost, c is not reference))
        self._costs = {c.name: float(c.cost) for c in self._order}
        cheaper = sum(1 for c in candidates if c.cost < reference.cost)
        a = 1.0 - self.gamma
        side = a / 2.0 if self.bound == "clopper-pearson" else a / max(cheaper, 1)
        self.lower_error = self.upper_error = side
        self._table = decision_table(self.bound, 1.0 - self.delta, side, side, self.n_items)
        self._status = {c.name: Status.UNKNOWN for c in self._order}
        self._status[reference.name] = Status.SATISFIED
        self._decided: dict[str, tuple[int, str]] = {reference.name: (0, "reference")}
        self._agree = dict.fromkeys(self._costs, 0)
        self._runs = dict.fromkeys(self._costs, 0)
        self._paid = dict.fromkeys(self._costs, 0.0)
        self._history: list[Check] = []
        self._profiled = 0
        self._done = False
        # profiling for the mix (module docstring): candidates cheaper than the reference still profiled
        self._bounds_memo: tuple = (-1, None)
        self._next_mix_check = 0
        self._mix_run = {c.name for c in candidates if c.cost < reference.cost} if self.stop_for_mix else set()
        self._refresh()

    # -- state -------------------------------------------------------------------------
    @property
    def profiling(self) -> bool:
        """True while items still have to be profiled."""
        return not self._done

    @property
    def profiled(self) -> int:
        return self._profiled

    def status(self, name: str) -> Status:
        return self._status[name]

    def unit_cost(self, name: str) -> float:
        """Cost per item: paid / runs once the model ran, else the expected cost."""
        runs = self._runs[name]
        return self._paid[name] / runs if runs else self._costs[name]

    def to_run(self) -> tuple[str, ...]:
        """Models to run on the next item: unknown candidates cheaper than the cheapest
        satisfied model, then the reference (price order)."""
        return self._run

    def batch_limit(self) -> int:
        """How many items ``observe`` may take at once (up to the next check)."""
        return min(self.check_every - self._profiled % self.check_every, self.n_items - self._profiled)

    def _cheapest_satisfied(self) -> Candidate:
        return next(c for c in self._order if self._status[c.name] is Status.SATISFIED)

    def _refresh(self) -> None:
        sat = self._cheapest_satisfied()
        unknown = []
        for c in self._order:
            if c is sat:
                break
            if self._status[c.name] is Status.UNKNOWN:
                unknown.append(c.name)
        self._unknown = tuple(unknown)
        if self.stop_for_mix:
            profiled = [c.name for c in self._order if c.name in self._mix_run]
            self._run = (*profiled, self.reference.name)
            self._done = not profiled or self._profiled >= self.n_items
            return
        self._run = (*unknown, self.reference.name)
        if not unknown or self._profiled >= self.n_items:
            self._done = True

    # -- driving -----------------------------------------------------------------------
    def observe(self, agreements: Mapping[str, object], costs_paid: Mapping[str, float] | None = None) -> None:
        """Record the next ``k`` items: per unsettled candidate in ``to_run()``, whether
        it agreed with the reference on each (a bool or ``k`` bools; ``k`` at most
        ``batch_limit()``). ``costs_paid``: optional cost paid per model for these items
        (the reference included); the expected cost stands in for models left out."""
        if self._done:
            raise LlmnetError("profiling is over; call plan() or result()")
        expected = set(self._run) - {self.reference.name}
        given = set(agreements)
        if given != expected:
            raise LlmnetError(
                f"observe() needs agreements for exactly {sorted(expected)}; "
                f"missing {sorted(expected - given)}, unexpected {sorted(given - expected)}"
            )
        rows = {m: np.atleast_1d(np.asarray(v, dtype=bool)).ravel() for m, v in agreements.items()}
        sizes = {len(r) for r in rows.values()}
        k = sizes.pop()
        if sizes or not 1 <= k <= self.batch_limit():
            raise LlmnetError(
                f"observe() needs the same number of items (1..{self.batch_limit()}) for every model"
            )
        paid = costs_paid or {}
        if set(paid) - set(self._run):
            raise LlmnetError(f"costs_paid names models that did not run: {sorted(set(paid) - set(self._run))}")
        for m in self._run:
            self._runs[m] += k
            self._paid[m] += float(paid[m]) if m in paid else self._costs[m] * k
        for m, r in rows.items():
            self._agree[m] += int(r.sum())
        self._agree[self.reference.name] += k
        self._profiled += k
        if self._profiled % self.check_every == 0 or self._profiled == self.n_items:
            self._check()

    def _mark(self, name: str, status: Status, reason: str) -> None:
        self._status[name] = status
        self._decided[name] = (self._profiled, reason)

    def _check(self) -> None:
        for m in self._run[:-1]:
            s, n = self._agree[m], self._runs[m]
            if m in self._unknown:
                if self._table.invalid(s, n):
                    self._mark(m, Status.INVALID, "bound")
                elif self._table.satisfied(s, n):
                    self._mark(m, Status.SATISFIED, "bound")
            self._history.append(Check(self._profiled, m, s, n, self._status[m]))
        self._refresh()
        if self._unknown and self.early_termination and self._profiled >= self.termination_from \
                and self._profiled < self.n_items and self._expected_gain_gone():
            for m in self._unknown:
                self._mark(m, Status.INVALID, "early-termination")
            self._refresh()
        if self.stop_for_mix and not self._done and self._profiled >= self._next_mix_check:
            # the mix rules run at checks spaced by ~2% of the items profiled so far
            step = self.check_every * max(1, round(0.02 * self._profiled / self.check_every))
            self._next_mix_check = self._profiled + step
            base = {c.name: self._mix_options(c.name) for c in self._order}
            self._drop_for_mix(base)
            if self._mix_run and self._mix_gain_gone(base):
                for m in self._mix_run:
                    self._decided.setdefault(m, (self._profiled, "stopped-for-mix"))
                self._mix_run.clear()
            self._refresh()

    def _mix_cost(self, profiled: int, base: Mapping[str, list[MixOption]], lowers: Mapping[str, float]) -> float:
        """Cost per item of the optimal mix over the items after ``profiled``, each model with
        its ``base`` options, the unknown candidates credited with ``lowers`` instead."""
        costs = {c.name: self.unit_cost(c.name) for c in self._order}
        options = {m: [MixOption(1.0, lowers[m])] if m in lowers else base[m] for m in costs}
        target = remaining_target(self.delta, profiled, self.n_items)
        return solve_mix(costs, options, target, self.gamma, solver=self.mix_solver).cost_per_item

    def _drop_for_mix(self, base: Mapping[str, list[MixOption]]) -> None:
        """Stop profiling each candidate whose most optimistic credit (its own upper bound)
        would save less over the remaining items than profiling it on as many items again
        as so far costs (a confidence bound tightens appreciably only when its sample grows
        by a constant factor)."""
        now = self._mix_cost(self._profiled, base, {})
        remaining = self.n_items - self._profiled
        for m in sorted(self._mix_run):
            if not self._runs[m]:
                continue
            best = self._bounds_now()[1][m]
            gain = remaining * (now - self._mix_cost(self._profiled, base, {m: best}))
            if gain <= self.unit_cost(m) * self._runs[m]:
                self._mix_run.discard(m)
                self._decided.setdefault(m, (self._profiled, "dropped-for-mix"))

    def _mix_gain_gone(self, base: Mapping[str, list[MixOption]]) -> bool:
        """Whether no amount of further profiling is projected to make the mix cheaper (module docstring)."""
        remaining = self.n_items - self._profiled
        profiled = self._run[:-1]
        per_item = self.unit_cost(self.reference.name) + sum(self.unit_cost(m) for m in profiled)
        now = remaining * self._mix_cost(self._profiled, base, {})
        ks = self.check_every * 2 ** np.arange(max(int(np.ceil(np.log2(max(remaining / self.check_every, 1)))), 0))
        ks = ks[ks < remaining]
        bound = get_bound(self.bound)
        names = [m for m in profiled if self._runs[m]]
        s = np.array([self._agree[m] for m in names], dtype=float)
        n = np.array([self._runs[m] for m in names], dtype=float)
        for k in ks:
            if per_item * k >= now:
                break
            # each profiled candidate's counts moved along its observed rate (one bisection for all)
            moved = bound.lower(np.minimum(s * (1 + k / n), n + k), n + k, self.lower_error)
            lowers = {m: float(v) for m, v in zip(names, moved)}
            if k * per_item + (remaining - k) * self._mix_cost(self._profiled + int(k), base, lowers) < now:
                return False
        return True

    def expected_costs(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The early-termination arithmetic at the current state: ``(k, E[C](k), c_sat R)``
        over ``k = 1, 2, 4, ... < R`` for the unknown candidates still profiled (module
        docstring). Profiling is cut when ``E[C](k) >= c_sat R`` for every ``k``."""
        remaining = self.n_items - self._profiled
        c_sat = self.unit_cost(self._cheapest_satisfied().name)
        probs = [_reach(self._table, self._agree[m], self._runs[m], self._profiled) for m in self._unknown]
        k = 2.0 ** np.arange(len(probs[0]) if probs else 0)
        expected = k * (self.unit_cost(self.reference.name) + sum(self.unit_cost(m) for m in self._unknown))
        none_yet = np.ones_like(k)
        for m, p in zip(self._unknown, probs):
            expected = expected + none_yet * p * (remaining - k) * self.unit_cost(m)
            none_yet = none_yet * (1.0 - p)
        expected = expected + none_yet * (remaining - k) * c_sat
        return k, expected, c_sat * remaining

    def _expected_gain_gone(self) -> bool:
        _, expected, stay = self.expected_costs()
        return bool(expected.size == 0 or expected.min() >= stay)

    # -- outcome -----------------------------------------------------------------------
    def _mix_options(self, name: str) -> list[MixOption]:
        if name == self.reference.name:
            return [MixOption(1.0, 1.0)]
        s, n = self._agree[name], self._runs[name]
        if n == 0:
            return [MixOption(1.0, 0.0)]
        b = get_bound(self.bound)
        if self.bound == "clopper-pearson":  # paper: a level per candidate, product >= gamma
            levels = paper_levels(self.gamma)
            return [MixOption(c, float(b.lower(s, n, (1.0 - c) / 2.0))) for c in levels] + [MixOption(1.0, 0.0)]
        # anytime: the error is already split over candidates; one fixed bound each
        return [MixOption(1.0, self._bounds_now()[0][name])]

    def _bounds_now(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every run candidate's anytime (lower, upper) bounds now: one bisection for all
        (lower and upper errors are equal), memoised until the next item."""
        if self._bounds_memo[0] != self._profiled:
            names = [c.name for c in self._order if c.name != self.reference.name and self._runs[c.name]]
            s = np.array([self._agree[m] for m in names], dtype=float)
            n = np.array([self._runs[m] for m in names], dtype=float)
            both = get_bound(self.bound).lower(np.concatenate([s, n - s]), np.concatenate([n, n]), self.lower_error)
            k = len(names)
            self._bounds_memo = (self._profiled, (dict(zip(names, map(float, both[:k]))),
                                                  dict(zip(names, map(float, 1.0 - both[k:])))))
        return self._bounds_memo[1]

    def plan(self, mix: bool | None = None) -> SmartPlan:
        """The application plan for the unprofiled items (after profiling); ``mix``
        overrides the session's choice (both plans follow the same profiling)."""
        mix = self.mix if mix is None else mix
        if not self._done:
            raise LlmnetError("plan() is available once profiling is over")
        n, big_n = self._profiled, self.n_items
        remaining = big_n - n
        ref = self.reference.name
        if remaining == 0:
            return SmartPlan("none", big_n, n, ref, 1.0 - self.delta, {}, (), {}, {}, 0.0)
        costs = {c.name: self.unit_cost(c.name) for c in self._order}
        # confidence a credited bound was taken at: Clopper-Pearson, the two-sided level of
        # the interval whose lower end is used (paper); anytime, the one-sided 1 - (1-gamma)/K
        own_level = self.gamma if self.bound == "clopper-pearson" else 1.0 - self.lower_error
        if mix:
            target = remaining_target(self.delta, n, big_n)
            options = {m: self._mix_options(m) for m in costs}
            solution = solve_mix(costs, options, target, self.gamma, solver=self.mix_solver)
            lowers = {m: o.lower for m, o in solution.options.items()}
            counts = split_items(remaining, solution.shares, lowers)
            level = {m: o.confidence if self.bound == "clopper-pearson" else own_level
                     for m, o in solution.options.items()}
            method = "mix"
        else:
            chosen = self._cheapest_satisfied().name
            counts = {chosen: remaining}
            target = 1.0 - self.delta
            bound = get_bound(self.bound)
            lowers = {chosen: float(bound.lower(self._agree[chosen], self._runs[chosen], self.lower_error))}
            level = {chosen: own_level}
            method = "single"
        lowers[ref], level[ref] = 1.0, 1.0
        blocks, start = [], n
        for c in self._order:
            cnt = counts.get(c.name, 0)
            if cnt > 0:
                blocks.append((c.name, start, start + cnt))
                start += cnt
        used = {m: cnt for m, cnt in counts.items() if cnt > 0}
        return SmartPlan(
            method=method,
            n_items=big_n,
            profiled=n,
            reference=ref,
            target=float(target),
            counts=used,
            blocks=tuple(blocks),
            lowers={m: float(lowers[m]) for m in used},
            confidences={m: float(level[m]) for m in used},
            expected_cost=float(sum(cnt * costs[m] for m, cnt in used.items())),
        )

    def result(
        self,
        realised_agreement: float | None = None,
        application_cost: float | None = None,
        mix: bool | None = None,
    ) -> SmartResult:
        """Freeze the run: pass the realised agreement (and the application cost actually
        paid, else the plan's expected cost) when known; ``mix`` as in ``plan``."""
        mix = self.mix if mix is None else mix
        plan = self.plan(mix)
        decisions = tuple(
            Decision(c.name, self._status[c.name], *self._decided.get(c.name, (None, "undecided")))
            for c in self._order
        )
        return SmartResult(
            n_items=self.n_items,
            delta=self.delta,
            gamma=self.gamma,
            bound=self.bound,
            mix=mix,
            reference=self.reference.name,
            lower_error=self.lower_error,
            upper_error=self.upper_error,
            profiled=self._profiled,
            decisions=decisions,
            history=tuple(self._history),
            plan=plan,
            profiling_cost=float(sum(self._paid.values())),
            application_cost=float(plan.expected_cost if application_cost is None else application_cost),
            reference_cost=self.n_items * self.unit_cost(self.reference.name),
            realised_agreement=realised_agreement,
        )
