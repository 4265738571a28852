"""SMART's simulation (Jo & Trummer 2024, arXiv 2403.13835, experiments): per item, each
candidate agrees with the reference independently with its measured agreement rate."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from llmnet.errors import LlmnetError
from llmnet.smart.session import Candidate, SmartPlan, SmartResult, SmartSession

__all__ = ["simulate_smart", "simulate_profiling", "simulate_application", "profile_items", "applied_agreement"]


def simulate_profiling(session: SmartSession, agreement_rates: Mapping[str, float], rng: np.random.Generator) -> None:
    """Drive ``session`` to the end of profiling: candidate ``m`` agrees with the reference
    on each item independently with probability ``agreement_rates[m]`` (the paper's
    simulation)."""
    while session.profiling:
        todo = session.to_run()[:-1]
        k = session.batch_limit()
        draws = rng.random((len(todo), k)) < np.array([agreement_rates[m] for m in todo])[:, None]
        session.observe(dict(zip(todo, draws)))


def simulate_application(plan: SmartPlan, agreement_rates: Mapping[str, float], rng: np.random.Generator) -> float:
    """Realised agreement share of the final output over all items when ``plan`` is
    applied: profiled items and the reference's share agree, model ``m``'s items agree
    with probability ``agreement_rates[m]`` each."""
    agree = plan.profiled
    for m, count in plan.counts.items():
        agree += count if m == plan.reference else int(rng.binomial(count, agreement_rates[m]))
    return agree / plan.n_items


def profile_items(session: SmartSession, items: Mapping[str, np.ndarray]) -> None:
    """Drive ``session`` to the end of profiling on a fixed table of items: ``items[m][i]``
    says whether candidate ``m`` agrees with the reference on item ``i`` (``N`` entries each)."""
    while session.profiling:
        start, k = session.profiled, session.batch_limit()
        session.observe({m: items[m][start:start + k] for m in session.to_run()[:-1]})


def applied_agreement(plan: SmartPlan, items: Mapping[str, np.ndarray]) -> float:
    """Realised agreement share over all items when ``plan`` is applied to the same table:
    profiled items and the reference's block agree, model ``m``'s block agrees where
    ``items[m]`` says so."""
    agree = plan.profiled
    for name, start, stop in plan.blocks:
        agree += stop - start if name == plan.reference else int(np.count_nonzero(items[name][start:stop]))
    return agree / plan.n_items


def simulate_smart(
    agreement_rates: Mapping[str, float],
    costs: Mapping[str, float],
    n_items: int,
    delta: float = 0.05,
    gamma: float = 0.95,
    bound: str = "clopper-pearson",
    mix: bool = False,
    seed: int | np.random.Generator = 0,
    reference: str | None = None,
    **session_options,
) -> SmartResult:
    """Run SMART on simulated items (``simulate_profiling``, then ``simulate_application``).

    ``costs``: per-item cost of every model, the reference included (by default the most
    expensive one); ``agreement_rates``: every other model's. The result carries the
    realised agreement of the final output with the reference over all ``n_items``."""
    ref = reference if reference is not None else max(costs, key=costs.__getitem__)
    if ref not in costs:
        raise LlmnetError(f"reference {ref!r} has no cost")
    names = [m for m in costs if m != ref]
    unknown = [m for m in names if m not in agreement_rates]
    if unknown:
        raise LlmnetError(f"no agreement rate for {unknown}")
    rng = np.random.default_rng(seed)
    session = SmartSession(
        n_items,
        Candidate(ref, costs[ref]),
        [Candidate(m, costs[m]) for m in names],
        delta=delta,
        gamma=gamma,
        bound=bound,
        mix=mix,
        **session_options,
    )
    simulate_profiling(session, agreement_rates, rng)
    return session.result(realised_agreement=simulate_application(session.plan(), agreement_rates, rng))
