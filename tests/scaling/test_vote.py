"""Exact Vote / Filter-Vote accuracy (llmnet.scaling.vote) against brute force, closed
forms, Monte Carlo and properties the theory guarantees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from llmnet.scaling.vote import (
    MAX_EXACT_K,
    Pool,
    difficulty,
    pool_counts,
    vote_accuracy,
    vote_accuracy_mc,
    vote_accuracy_pools,
)


def plurality_win(labels, n_classes: int) -> float:
    """Tie-weighted win of class 0: 1 / (number of classes sharing the top count)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    top = counts.max()
    return float(counts[0] == top) / np.count_nonzero(counts == top)


def brute_vote(counts, k: int) -> float:
    """Sum over every K-tuple of answer classes of P(tuple) * tie-weighted win."""
    q = np.asarray(counts, float) / np.sum(counts)
    return sum(np.prod(q[list(t)]) * plurality_win(t, q.size)
               for t in itertools.product(range(q.size), repeat=k))


def brute_filter_vote(pool: Pool, k: int) -> float:
    """Enumerate every tuple of K // 2 resampled generations (K = 1: one unjudged one)."""
    names = {pool.correct: 0}
    for a in pool.answers:
        names.setdefault(a, len(names))
    labels = [names[a] for a in pool.answers]
    m = len(labels)
    g = 1 if k == 1 else k // 2
    total = 0.0
    for idx in itertools.product(range(m), repeat=g):
        kept = [labels[i] for i in idx if pool.verdicts[i]] if k > 1 else []
        total += plurality_win(kept or [labels[i] for i in idx], len(names)) / m ** g
    return total


def binary_accuracy(p: float, ks) -> np.ndarray:
    """I_K(p) = sum_{j > K/2} C(K, j) p^j (1-p)^(K-j), a tie at even K counting 1/2."""
    ks = np.asarray(ks)
    return stats.binom.sf(ks // 2, ks, p) + np.where(ks % 2 == 0, 0.5, 0.0) * stats.binom.pmf(
        ks // 2, ks, p)


@pytest.mark.parametrize("counts", [
    [3, 2, 2, 1],        # several wrong classes, ties between them
    [2, 2, 2],           # three-way tie in probability
    [1, 1, 1, 1, 1],     # uniform over five classes
    [1, 4, 4],           # correct answer is the minority
    [2, 1, 1, 1, 1, 1],  # many small wrong classes
    [5, 3],              # binary
    [0.3, 0.3, 0.2, 0.2],
])
def test_exact_equals_brute_force_enumeration(counts):
    ks = [1, 2, 3, 4, 5, 6] if len(counts) <= 4 else [1, 2, 3, 4, 5]
    want = [brute_vote(counts, k) for k in ks]
    np.testing.assert_allclose(vote_accuracy(counts, ks), want, rtol=0, atol=1e-13)


def test_pool_with_unparseable_answers_matches_brute_force():
    pool = Pool("q1", ("A", "B", None, "A", None, "C", "B"), correct="A")
    assert pool_counts(pool).tolist() == [2, 2, 2, 1]
    ks = [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(vote_accuracy(pool, ks), [brute_vote([2, 2, 2, 1], k) for k in ks],
                               atol=1e-13)


def test_none_is_never_correct_even_when_it_wins():
    pool = Pool("q", (None, None, None, "A"), correct="A")
    np.testing.assert_allclose(vote_accuracy(pool, [1, 3, 25]), binary_accuracy(0.25, [1, 3, 25]),
                               atol=1e-13)


def test_true_answer_absent_or_alone():
    assert np.all(vote_accuracy(Pool("q", ("B", "C"), correct="A"), [1, 10, 500]) == 0.0)
    assert np.all(vote_accuracy(Pool("q", ("A", "A"), correct="A"), [1, 10, 500]) == 1.0)


@pytest.mark.parametrize("pool", [
    Pool("f1", ("A", "B", "A", "C"), "A", (True, False, False, True)),
    Pool("f2", ("A", "B", "B", None), "A", (False, True, False, True)),
    Pool("f3", ("B", "A", "C"), "A", (False, False, False)),      # judge rejects all
    Pool("f4", ("A", "B", "C", "B"), "A", (True, True, True, True)),
])
def test_filter_vote_equals_brute_force(pool):
    ks = [1, 2, 3, 4, 5, 6, 7]
    want = [brute_filter_vote(pool, k) for k in ks]
    np.testing.assert_allclose(vote_accuracy(pool, ks, method="filter_vote"), want, atol=1e-13)


def test_filter_vote_budget_rules():
    pool = Pool("f", ("A", "B", "B", "A", "C"), "A", (True, True, False, False, True))
    acc = vote_accuracy(pool, [1, 2, 3, 8, 9], method="filter_vote")
    assert acc[0] == pytest.approx(2 / 5)      # K = 1: one unjudged generation
    assert acc[1] == pytest.approx(acc[2])    # odd K: the spare call is unused
    assert acc[3] == pytest.approx(acc[4])


@pytest.mark.parametrize("p", [0.2, 0.45, 0.5, 0.55, 0.9])
def test_binary_case_is_the_binomial_majority_formula(p):
    ks = np.arange(1, 301)
    np.testing.assert_allclose(vote_accuracy([p, 1 - p], ks), binary_accuracy(p, ks), atol=1e-12)


def test_exact_agrees_with_monte_carlo_within_sampling_error():
    rng = np.random.default_rng(7)
    pools = [np.array([30, 25, 20, 15, 10]), np.array([8, 10, 2, 1, 1, 1, 1]), np.array([5, 5])]
    ks = [1, 4, 9, 40, 150, 400]
    trials = 4000
    for counts in pools:
        exact = vote_accuracy(counts, ks)
        mc = vote_accuracy_mc(counts, ks, trials=trials, rng=rng)
        sd = np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / trials)
        assert np.all(np.abs(mc - exact) < 4.5 * sd), (counts, exact, mc)


def test_filter_vote_agrees_with_monte_carlo():
    pool = Pool("f", tuple("AABBBCCDAA"), "A", (True, False, True, False, True, True, False,
                                                 True, True, False))
    ks = [2, 6, 21, 80]
    exact = vote_accuracy(pool, ks, method="filter_vote")
    mc = vote_accuracy_mc(pool, ks, trials=4000, rng=3, method="filter_vote")
    assert np.all(np.abs(mc - exact) < 4.5 * np.sqrt(exact * (1 - exact) / 4000 + 1e-6))


def test_many_pools_deduplicate_and_match_single_calls():
    rng = np.random.default_rng(0)
    pools = [rng.integers(0, 6, size=rng.integers(2, 7)) for _ in range(12)]
    for counts in pools:
        counts[0] += 1
    pools += [pools[0][[0, *reversed(range(1, pools[0].size))]]]  # relabelled duplicate
    ks = [1, 2, 7, 30, 64]
    many = vote_accuracy_pools(pools, ks)
    single = np.array([vote_accuracy(p, ks) for p in pools])
    np.testing.assert_allclose(many, single, atol=1e-14)
    np.testing.assert_array_equal(many[0], many[-1])


def test_large_k_is_stable_and_near_the_normal_approximation():
    acc = vote_accuracy([40, 35, 15, 10], [1, 10, 100, 1000])
    assert np.all(np.isfinite(acc)) and np.all(np.diff(acc) > 0)
    # at K = 1000 only the runner-up matters: X_0 - X_1 is about normal
    mean, var = 1000 * 0.05, 1000 * (0.75 - 0.05 ** 2)
    assert acc[-1] == pytest.approx(stats.norm.cdf(mean / np.sqrt(var)), abs=0.01)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
       st.lists(st.integers(1, 120), min_size=1, max_size=5))
def test_accuracy_is_a_probability_and_invariant_to_relabelling(counts, ks):
    acc = vote_accuracy(counts, ks)
    assert np.all((acc >= 0) & (acc <= 1))
    relabelled = [counts[0], *reversed(counts[1:])]
    np.testing.assert_allclose(vote_accuracy(relabelled, ks), acc, atol=1e-13)
    np.testing.assert_allclose(vote_accuracy(np.array(counts) * 3, ks), acc, atol=1e-13)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=3, max_size=6), st.integers(1, 60))
def test_splitting_a_wrong_answer_never_hurts(counts, k):
    """Splitting a wrong class lowers every wrong count pointwise, so accuracy cannot
    drop; merging all wrong answers gives the binary lower bound I_K(q0)."""
    coarse = [*counts[:-1], 2 * counts[-1]]
    split = [*counts[:-1], counts[-1], counts[-1]]
    assert vote_accuracy(split, [k])[0] >= vote_accuracy(coarse, [k])[0] - 1e-12
    merged = [counts[0], sum(counts[1:])]
    assert vote_accuracy(counts, [k])[0] >= vote_accuracy(merged, [k])[0] - 1e-12


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 0.99), st.integers(1, 80))
def test_binary_monotone_in_odd_k_and_flat_at_even_k(p, m):
    acc = vote_accuracy([p, 1 - p], [2 * m - 1, 2 * m, 2 * m + 1])
    assert acc[0] == pytest.approx(acc[1], abs=1e-12)  # I_{2m} = I_{2m-1}
    if p > 0.5:
        assert acc[2] >= acc[0] - 1e-12
    else:
        assert acc[2] <= acc[0] + 1e-12


def test_difficulty_matches_definition_and_interval_covers_it():
    pool = Pool("d", tuple("AAAABBBCCN"), "A")
    d = difficulty(pool)
    assert d.d == pytest.approx(0.3 - 0.4) and d.easy
    assert d.lo <= d.d <= d.hi and 0.0 <= d.p_easy <= 1.0
    hard = difficulty(Pool("h", tuple("ABBBC"), "A"))
    assert hard.d == pytest.approx(0.4) and not hard.easy and hard.p_easy < 0.2


def test_filter_difficulty_uses_kept_generations():
    pool = Pool("d", tuple("AABBB"), "A", (True, True, False, False, True))
    assert difficulty(pool).d == pytest.approx(0.2)
    assert difficulty(pool, method="filter_vote").d == pytest.approx(1 / 3 - 2 / 3)
    none_kept = Pool("d", tuple("AB"), "A", (False, False))
    assert difficulty(none_kept, method="filter_vote").d == pytest.approx(0.0)


@pytest.mark.parametrize("bad_ks", [[], [0], [1.5], [-3], [[1, 2]], ["a"], [MAX_EXACT_K + 1]])
def test_bad_ks_are_rejected(bad_ks):
    with pytest.raises(ValueError):
        vote_accuracy([1, 1], bad_ks)


def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="method"):
        vote_accuracy([1, 1], [1], method="majority")
    with pytest.raises(ValueError, match="non-negative"):
        vote_accuracy([1, -1], [1])
    with pytest.raises(ValueError, match="verdicts"):
        vote_accuracy(Pool("q", ("A",), "A"), [2], method="filter_vote")
    with pytest.raises(ValueError, match="one verdict per generation"):
        Pool("q", ("A", "B"), "A", (True,))
    with pytest.raises(ValueError, match="empty"):
        Pool("q", (), "A")
    with pytest.raises(ValueError, match="shape"):
        vote_accuracy([[1, 2], [3, 4], [5, 6]], [2], method="filter_vote")
