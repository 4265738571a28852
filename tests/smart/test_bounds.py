"""Clopper-Pearson against known values and scipy; the anytime bound's validity under
continuous monitoring; decision tables and SMART's reach probability."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from llmnet.errors import LlmnetError
from llmnet.smart.bounds import (
    BettingMixture,
    ClopperPearson,
    clopper_pearson,
    decision_table,
    get_bound,
    reach_probability,
)

CP = ClopperPearson()
ANY = BettingMixture()


def test_clopper_pearson_known_values():
    # s = 0 and s = n have closed forms: U(0, n) = 1 - (a/2)^(1/n), L(n, n) = (a/2)^(1/n)
    lo, hi = clopper_pearson(0, 10, 0.95)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.1, abs=1e-12)
    lo, hi = clopper_pearson(10, 10, 0.95)
    assert lo == pytest.approx(0.025 ** 0.1, abs=1e-12) and hi == 1.0
    lo, hi = clopper_pearson(94, 100, 0.95)  # textbook value
    assert lo == pytest.approx(0.87397, abs=1e-5) and hi == pytest.approx(0.97767, abs=1e-5)
    assert clopper_pearson(0, 0, 0.95) == (0.0, 1.0)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy(confidence):
    for n in (1, 7, 30, 250):
        s = np.unique(np.linspace(0, n, 12).astype(int))
        lo, hi = clopper_pearson(s, n, confidence)
        ref = [stats.binomtest(int(k), n).proportion_ci(confidence, method="exact") for k in s]
        assert_allclose(lo, [r.low for r in ref], atol=1e-10)
        assert_allclose(hi, [r.high for r in ref], atol=1e-10)


@pytest.mark.parametrize("bound", [CP, ANY], ids=["cp", "anytime"])
def test_bounds_are_ordered_and_monotone(bound):
    n = 200
    s = np.arange(n + 1)
    lo, hi = bound.interval(s, n, 0.95)
    assert np.all(lo <= s / n + 1e-12) and np.all(hi >= s / n - 1e-12)
    assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0)
    assert lo[0] == 0.0 and hi[-1] == 1.0


@pytest.mark.parametrize("bound", [CP, ANY], ids=["cp", "anytime"])
def test_lower_at_least_and_min_successes_agree_with_lower(bound):
    for n in (10, 57, 400):
        s = np.arange(n + 1)
        lo = bound.lower(s, n, 0.025)
        for t in (0.5, 0.8, 0.9, 0.94):
            at_least = bound.lower_at_least(s, n, t, 0.025)
            clear = np.abs(lo - t) > 1e-8  # the bisection's tolerance
            assert np.array_equal(at_least[clear], (lo >= t)[clear])
            m = int(bound.min_successes(n, t, 0.025))
            assert m == (np.argmax(at_least) if at_least.any() else n + 1)


def test_anytime_wealth_decreases_in_p0():
    p0 = np.linspace(0.01, 0.99, 99)
    w = ANY.log_wealth(np.full(99, 80.0), np.full(99, 100.0), p0)
    assert np.all(np.diff(w) < 0)


def _first_crossing(bound, paths, looks, p, error):
    """Per path, whether ``lower > p`` at any of ``looks``."""
    s = np.cumsum(paths, axis=1)[:, looks - 1]
    n = np.broadcast_to(looks, s.shape)
    return (bound.lower_at_least(s, n, p + 1e-12, error)).any(axis=1)


def test_anytime_lower_bound_is_valid_under_continuous_monitoring():
    # Look after every single item up to n = 1,500: the anytime lower bound at error 0.05
    # may exceed the truth at some look in at most ~5% of paths, the fixed-n
    # Clopper-Pearson bound at the same error far more often.
    rng = np.random.default_rng(7)
    p, error, paths = 0.9, 0.05, 400
    draws = rng.random((paths, 1500)) < p
    looks = np.arange(1, 1501)
    any_rate = _first_crossing(ANY, draws, looks, p, error).mean()
    cp_rate = _first_crossing(CP, draws, looks[9::10], p, error).mean()
    assert any_rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / paths)
    assert cp_rate > 2 * error


def test_fixed_n_coverage_of_clopper_pearson():
    rng = np.random.default_rng(3)
    p, n = 0.93, 150
    s = rng.binomial(n, p, size=4000)
    lo, hi = clopper_pearson(s, n, 0.95)
    assert ((lo <= p) & (p <= hi)).mean() >= 0.95 - 0.01


@pytest.mark.parametrize("name", ["clopper-pearson", "anytime"])
def test_decision_table_matches_direct_interval(name):
    bound = get_bound(name)
    table = decision_table(name, 0.9, 0.02, 0.03, 700)
    for n in (1, 10, 100, 513, 700):  # 513 crosses a fill block
        s = np.arange(n + 1)
        lo = bound.lower(s, n, 0.02)
        hi = bound.upper(s, n, 0.03)
        clear = (np.abs(lo - 0.9) > 1e-8) & (np.abs(hi - 0.9) > 1e-8)
        sat = np.array([table.satisfied(int(k), n) for k in s])
        inv = np.array([table.invalid(int(k), n) for k in s])
        assert np.array_equal(sat[clear], (lo >= 0.9)[clear])
        assert np.array_equal(inv[clear], (hi < 0.9)[clear])
    assert decision_table(name, 0.9, 0.02, 0.03, 700) is table


def test_reach_probability_matches_direct_integration():
    table = decision_table("clopper-pearson", 0.9, 0.025, 0.025, 5000)
    s, n = 186, 200
    ks = np.array([1, 8, 64, 512])
    got = reach_probability(s, n, ks, table)
    p_hat = s / n
    sd = np.sqrt(p_hat * (1 - p_hat) / n)
    dist = stats.truncnorm((0 - p_hat) / sd, (1 - p_hat) / sd, loc=p_hat, scale=sd)
    grid = np.linspace(dist.ppf(1e-9), dist.ppf(1 - 1e-9), 20001)
    dens = dist.pdf(grid)
    for k, g in zip(ks, got):
        need = table.satisfied_from(n + k)[0] - s
        tail = stats.binom.sf(need - 1, k, grid) if need <= k else np.zeros_like(grid)
        assert g == pytest.approx(np.trapezoid(tail * dens, grid), abs=2e-4)
    assert got[0] == 0.0  # one more item cannot lift L(186/200) above 0.9
    assert np.all(np.diff(got) >= -1e-12)


def test_reach_probability_point_mass_at_one():
    table = decision_table("clopper-pearson", 0.98, 0.025, 0.025, 1000)
    # 100/100 agree: p_hat = 1, so p = 1 surely and every further item agrees
    got = reach_probability(100, 100, np.array([1, 16, 256]), table)
    need = table.satisfied_from(np.array([101, 116, 356])) - 100
    assert_allclose(got, (need <= np.array([1, 16, 256])).astype(float))


def test_errors():
    with pytest.raises(LlmnetError, match="unknown bound"):
        get_bound("wald")
    with pytest.raises(LlmnetError):
        CP.lower(5, 3, 0.05)
    with pytest.raises(LlmnetError):
        ANY.lower(1, 3, 0.0)
    with pytest.raises(LlmnetError):
        clopper_pearson(1, 3, 1.5)
    with pytest.raises(LlmnetError):
        BettingMixture(bets=np.array([0.5, 1.2]))
