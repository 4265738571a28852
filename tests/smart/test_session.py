"""SMART's state machine on hand-made sequences, its plans, and simulated guarantees."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from llmnet.errors import LlmnetError
from llmnet.smart.bounds import get_bound
from llmnet.smart.plots import plot_bounds
from llmnet.smart.session import Candidate, SmartSession, Status
from llmnet.smart.simulate import simulate_smart

REF = Candidate("ref", 1.0)


def feed(session, rows):
    """Observe per-candidate agreement lists, in batches up to each check."""
    pos = 0
    length = len(next(iter(rows.values())))
    while pos < length:
        k = min(session.batch_limit(), length - pos)
        session.observe({m: r[pos:pos + k] for m, r in rows.items()})
        pos += k


def test_satisfied_at_first_check():
    s = SmartSession(1000, REF, [Candidate("cheap", 0.1)], delta=0.35)
    assert s.to_run() == ("cheap", "ref")
    feed(s, {"cheap": [True] * 10})  # L(10/10) = 0.025^(1/10) = 0.69 >= 0.65
    assert not s.profiling and s.status("cheap") is Status.SATISFIED
    plan = s.plan()
    assert plan.method == "single" and dict(plan.counts) == {"cheap": 990}
    r = s.result()
    assert r.decisions[0].at_item == 10 and r.decisions[0].reason == "bound"
    assert r.profiling_cost == pytest.approx(10 * 1.1)
    assert r.savings == pytest.approx(1000 / (11 + 99))


def test_invalid_at_first_check_falls_back_to_reference():
    s = SmartSession(1000, REF, [Candidate("cheap", 0.1)], delta=0.1)
    feed(s, {"cheap": [False] * 10})  # U(0/10) = 0.31 < 0.9
    assert s.status("cheap") is Status.INVALID and not s.profiling
    assert dict(s.plan().counts) == {"ref": 990}


def test_no_decision_between_checks():
    s = SmartSession(1000, REF, [Candidate("cheap", 0.1)], delta=0.35)
    s.observe({"cheap": [True] * 9})
    assert s.profiling and s.batch_limit() == 1 and s.status("cheap") is Status.UNKNOWN
    with pytest.raises(LlmnetError, match="same number of items"):
        s.observe({"cheap": [True, True]})
    with pytest.raises(LlmnetError, match="missing"):
        s.observe({})
    with pytest.raises(LlmnetError, match="unexpected"):
        s.observe({"cheap": True, "ref": True})
    with pytest.raises(LlmnetError, match="once profiling is over"):
        s.plan()
    s.observe({"cheap": True})
    assert not s.profiling
    with pytest.raises(LlmnetError, match="profiling is over"):
        s.observe({"cheap": True})


def test_cheaper_unknown_keeps_profiling_after_a_satisfied_one():
    s = SmartSession(1000, REF, [Candidate("mid", 0.3), Candidate("cheap", 0.1)], delta=0.35)
    assert s.to_run() == ("cheap", "mid", "ref")
    feed(s, {"cheap": [True] * 8 + [False] * 2, "mid": [True] * 10})
    # mid satisfied; cheap (8/10: L 0.44, U 0.97) unknown and cheaper -> keep profiling it
    assert s.status("mid") is Status.SATISFIED and s.status("cheap") is Status.UNKNOWN
    assert s.profiling and s.to_run() == ("cheap", "ref")
    feed(s, {"cheap": [True] * 10})  # 18/20: L = 0.683 >= 0.65
    assert s.status("cheap") is Status.SATISFIED and not s.profiling
    assert dict(s.plan().counts) == {"cheap": 980}


def test_stop_when_cheapest_non_invalid_is_satisfied():
    s = SmartSession(1000, REF, [Candidate("mid", 0.3), Candidate("cheap", 0.1)], delta=0.35)
    feed(s, {"cheap": [False] * 10, "mid": [True] * 10})
    assert s.status("cheap") is Status.INVALID and not s.profiling
    assert dict(s.plan().counts) == {"mid": 990}


def test_early_termination_cuts_a_hopeless_candidate():
    rows = {"cheap": ([True] * 9 + [False]) * 10}  # 90% agreement, exactly the target
    s = SmartSession(120, REF, [Candidate("cheap", 0.05)], delta=0.1)
    feed(s, {"cheap": rows["cheap"][:90]})
    assert s.profiling and s.status("cheap") is Status.UNKNOWN  # no early termination before 100
    k, expected, stay = s.expected_costs()
    # with 30 items left no k < 30 can lift L above 0.9, so P = 0 and
    # E[C](k) = k (c_ref + c_cheap) + (R - k) c_sat
    assert_allclose(k, [1, 2, 4, 8, 16])
    assert_allclose(expected, k * 1.05 + (30 - k) * 1.0)
    assert stay == pytest.approx(30.0)
    feed(s, {"cheap": rows["cheap"][90:]})
    assert s.status("cheap") is Status.INVALID and not s.profiling
    assert s.result().decisions[0].reason == "early-termination"

    s = SmartSession(120, REF, [Candidate("cheap", 0.05)], delta=0.1, early_termination=False)
    feed(s, rows)
    assert s.profiling and s.status("cheap") is Status.UNKNOWN


def test_early_termination_keeps_a_promising_candidate_with_many_items_left():
    s = SmartSession(100_000, REF, [Candidate("cheap", 0.05)], delta=0.1)
    feed(s, {"cheap": ([True] * 23 + [False] * 2) * 4})  # 92/100: L 0.85 < 0.9 < U
    _, expected, stay = s.expected_costs()
    assert expected.min() < stay
    assert s.profiling and s.status("cheap") is Status.UNKNOWN


def test_costs_paid_replace_expected_costs():
    s = SmartSession(1000, REF, [Candidate("cheap", 0.1)], delta=0.35)
    s.observe({"cheap": [True] * 10}, costs_paid={"ref": 25.0, "cheap": 0.5})
    assert s.unit_cost("ref") == pytest.approx(2.5) and s.unit_cost("cheap") == pytest.approx(0.05)
    r = s.result()
    assert r.profiling_cost == pytest.approx(25.5)
    assert r.reference_cost == pytest.approx(2500.0)
    assert r.application_cost == pytest.approx(990 * 0.05)


def test_mix_plan_uses_a_zero_credit_model_and_covers_items():
    s = SmartSession(1000, REF, [Candidate("cheap", 0.1)], delta=0.1, mix=True)
    feed(s, {"cheap": [False] * 10})
    plan = s.plan()
    # a' = (0.9 - 10/1000) * 1000/990; the cheap model may take 1 - a' of the rest
    target = (0.9 - 0.01) * 1000 / 990
    assert plan.method == "mix" and plan.target == pytest.approx(target)
    assert plan.counts["cheap"] == 100  # (1 - a') * 990 = 990 - 890
    assert sum(plan.counts.values()) == 990
    assert plan.blocks[0] == ("cheap", 10, 10 + plan.counts["cheap"])
    assert plan.model_for(5) == "ref" and plan.model_for(10) == "cheap" and plan.model_for(999) == "ref"
    assert s.plan(mix=False).counts == {"ref": 990}


def test_anytime_needs_more_evidence_and_splits_the_error():
    cands = [Candidate("a", 0.1), Candidate("b", 0.2), Candidate("c", 0.3), Candidate("dear", 2.0)]
    s = SmartSession(1000, REF, cands, delta=0.2, bound="anytime")
    assert s.lower_error == pytest.approx(0.05 / 3)  # three candidates cheaper than the reference
    cp = SmartSession(1000, REF, [Candidate("a", 0.1)], delta=0.2)
    anytime = SmartSession(1000, REF, [Candidate("a", 0.1)], delta=0.2, bound="anytime")
    for session in (cp, anytime):
        feed(session, {"a": [True] * 20})
    # 20/20: Clopper-Pearson L = 0.025^(1/20) = 0.83 >= 0.8; the anytime bound is lower
    assert cp.status("a") is Status.SATISFIED
    assert get_bound("anytime").lower(20, 20, anytime.lower_error) < 0.8
    assert anytime.status("a") is Status.UNKNOWN


def test_reference_only_session():
    s = SmartSession(50, REF, [Candidate("dear", 3.0)])
    assert not s.profiling
    r = s.result(realised_agreement=1.0)
    assert dict(r.plan.counts) == {"ref": 50} and r.savings == pytest.approx(1.0) and r.target_met


def test_bad_configuration():
    with pytest.raises(LlmnetError, match="unique"):
        SmartSession(10, REF, [Candidate("ref", 0.1)])
    with pytest.raises(LlmnetError, match="delta"):
        SmartSession(10, REF, [Candidate("a", 0.1)], delta=1.5)
    with pytest.raises(LlmnetError, match="unknown bound"):
        SmartSession(10, REF, [Candidate("a", 0.1)], bound="hoeffding")


RATES = {"good": 0.97, "bad": 0.5}
COSTS = {"ref": 1.0, "good": 0.1, "bad": 0.01}


@pytest.mark.parametrize("bound", ["clopper-pearson", "anytime"])
@pytest.mark.parametrize("mix", [False, True])
def test_simulation_meets_target_in_most_seeds(bound, mix):
    results = [simulate_smart(RATES, COSTS, 3000, delta=0.05, bound=bound, mix=mix, seed=s) for s in range(30)]
    assert np.mean([r.target_met for r in results]) >= 0.9
    assert np.mean([r.savings for r in results]) > 2.0
    assert all(r.plan.counts.get("bad", 0) == 0 or mix for r in results)


def test_simulation_is_deterministic_and_serialisable(tmp_path):
    a = simulate_smart(RATES, COSTS, 2000, delta=0.05, seed=5, mix=True)
    b = simulate_smart(RATES, COSTS, 2000, delta=0.05, seed=5, mix=True)
    assert a == b
    data = json.loads(json.dumps(a.to_dict(with_history=True)))
    assert data["plan"]["method"] == "mix" and data["history"]["good"]["lower"]
    assert data["decisions"][0]["status"] in {"satisfied", "invalid", "unknown"}
    path = tmp_path / "bounds.png"
    plot_bounds(a, path)
    assert path.stat().st_size > 1000
    with pytest.raises(LlmnetError, match="no agreement rate"):
        simulate_smart({"good": 0.9}, COSTS, 100)


@pytest.mark.parametrize("bound", ["clopper-pearson", "anytime"])
def test_mix_never_dearer_than_single_model_at_dollar_costs(bound):
    # The paper's IMDB costs in dollars per item (~1e-5 to ~1e-2): the mix's plan must never
    # cost more than the single-model plan after the same profiling (it is one of its options).
    costs = {"gpt-4": 9.54e-3, "turbo": 3.18e-4, "instruct": 4.7e-4, "davinci": 6.5e-4, "babbage": 1.3e-4}
    rates = {"turbo": 0.94, "instruct": 0.96, "davinci": 0.0, "babbage": 0.0}
    for seed in range(6):
        for delta in (0.04, 0.06, 0.1):
            s = SmartSession(20_000, Candidate("gpt-4", costs["gpt-4"]),
                             [Candidate(m, c) for m, c in costs.items() if m != "gpt-4"], delta=delta, bound=bound)
            from llmnet.smart.simulate import simulate_profiling
            simulate_profiling(s, rates, np.random.default_rng(seed))
            single, mixed = s.plan(mix=False), s.plan(mix=True)
            assert mixed.expected_cost <= single.expected_cost * (1 + 1e-9) + 1e-12


def test_stop_for_mix_ends_profiling_early_and_keeps_the_bound():
    # a candidate at 0.97 against a 0.95 target: the anytime mix stops profiling once more items
    # are not projected to make the mix cheaper, before the bound marks the candidate satisfied
    costs = {"ref": 1.0, "cheap": 0.03}
    rates = {"cheap": 0.97}
    stop = simulate_smart(rates, costs, 5000, delta=0.05, bound="anytime", mix=True, seed=0)
    keep = simulate_smart(rates, costs, 5000, delta=0.05, bound="anytime", mix=True, seed=0, stop_for_mix=False)
    assert stop.profiled < keep.profiled
    assert stop.total_cost <= keep.total_cost
    assert any(d.reason in ("stopped-for-mix", "dropped-for-mix") for d in stop.decisions)
    # all-agreeing profiles: the moved counts stay within their trials (no rounding past n)
    perfect = simulate_smart({"cheap": 1.0}, costs, 3000, delta=0.05, bound="anytime", mix=True, seed=0)
    assert perfect.realised_agreement >= 0.95


def test_mix_keeps_profiling_a_candidate_that_can_never_serve_alone():
    # 0.94 against a 0.96 target: the upper bound soon marks the candidate invalid, which ends
    # the paper's profiling; for the mix every further item raises the credited lower bound and
    # shrinks the reference's share, so the anytime mix profiles on and ends far cheaper
    costs = {"ref": 1.0, "cheap": 0.03}
    rates = {"cheap": 0.94}
    on = simulate_smart(rates, costs, 5000, delta=0.04, bound="anytime", mix=True, seed=1)
    off = simulate_smart(rates, costs, 5000, delta=0.04, bound="anytime", mix=True, seed=1, stop_for_mix=False)
    invalid_at = next(d.at_item for d in off.decisions if d.name == "cheap")
    assert off.profiled == invalid_at
    assert on.profiled > 2 * invalid_at
    assert on.decisions[0].status is Status.INVALID  # the single-model verdict is still kept
    assert on.total_cost < 0.9 * off.total_cost
    assert on.plan.counts["ref"] < off.plan.counts["ref"]
