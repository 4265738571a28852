"""Scaling-law fits (llmnet.scaling.laws): theory checks, simulate-and-refit, interval
coverage, the report and its plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from llmnet.scaling.laws import (
    bilevel_curve,
    bilevel_k_star,
    binary_vote,
    fit_bilevel,
    fit_mixture,
)
from llmnet.scaling.query_law import fit_per_query_law
from llmnet.scaling.plots import plot_scaling
from llmnet.scaling.report import scaling_report
from llmnet.scaling.vote import Pool, bucket_pools, vote_accuracy


def binary_pool(i: int, right: int, m: int) -> Pool:
    return Pool(f"q{i}", ("A",) * right + ("B",) * (m - right), "A")


def test_binary_vote_is_the_majority_sum_with_half_ties():
    ks = np.arange(1, 60)
    for p in (0.1, 0.45, 0.5, 0.8):
        want = stats.binom.sf(ks // 2, ks, p) + np.where(ks % 2 == 0, 0.5, 0) * stats.binom.pmf(
            ks // 2, ks, p)
        np.testing.assert_allclose(binary_vote(p, ks), want, atol=1e-13)


def test_papers_examples_peak_at_5_and_dip_at_3():
    up = bilevel_k_star(0.6, 0.85, 0.4)
    assert (up.shape, up.kind, up.k_exact, up.k_closed_form) == ("inverse-U", "argmax", 5, 5)
    down = bilevel_k_star(0.4, 0.65, 0.1)
    assert (down.shape, down.kind, down.k_exact, down.k_closed_form) == ("U", "argmin", 3, 3)
    ks = np.arange(1, 2001)
    assert ks[np.argmax(bilevel_curve(0.6, 0.85, 0.4, ks))] == 5
    assert ks[np.argmin(bilevel_curve(0.4, 0.65, 0.1, ks))] == 3


@pytest.mark.parametrize("seed", range(6))
def test_exact_optimum_and_shape_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    ks = np.arange(1, 4001, 2)
    for _ in range(40):
        alpha, p1, p2 = rng.uniform(0.05, 0.95), rng.uniform(0.55, 0.97), rng.uniform(0.03, 0.45)
        th = bilevel_k_star(alpha, p1, p2)
        f = bilevel_curve(alpha, p1, p2, ks)
        rises = f[1] > f[0]
        assert rises == (alpha > th.rise_threshold)
        if th.shape in ("inverse-U", "U") and th.k_exact < 3000:
            pick = np.argmax if th.kind == "argmax" else np.argmin
            best = pick(f)
            # far out the steps fall below double precision: compare values there
            assert f[best] == pytest.approx(f[(int(th.k_exact) - 1) // 2], abs=1e-13)
            if th.k_exact <= 51:
                assert ks[best] == th.k_exact
            assert (p1 + p2 > 1) == (th.shape == "inverse-U")
        elif th.shape == "decreasing":
            assert np.all(np.diff(f) <= 1e-12)
        elif th.shape == "increasing":
            assert np.all(np.diff(f) >= -1e-12)


def test_bilevel_limits_and_even_k():
    ks = np.array([7, 8, 20001])
    f = bilevel_curve(0.3, 0.9, 0.2, ks)
    assert f[0] == pytest.approx(f[1]) and f[2] == pytest.approx(0.3, abs=1e-9)
    with pytest.raises(ValueError, match="p1 >= 1/2 >= p2"):
        bilevel_k_star(0.5, 0.4, 0.3)


@pytest.mark.parametrize("truth", [(0.6, 0.85, 0.4), (0.4, 0.65, 0.1), (0.75, 0.7, 0.2)])
def test_bilevel_refit_recovers_parameters(truth):
    rng = np.random.default_rng(1)
    ks = np.arange(1, 41)
    sd = 0.002
    acc = bilevel_curve(*truth, ks) + rng.normal(0, sd, ks.size)
    fit = fit_bilevel(ks, acc, np.full(ks.size, sd))
    np.testing.assert_allclose([fit.params[k] for k in ("alpha", "p1", "p2")], truth, atol=0.03)
    theory = bilevel_k_star(*truth)
    assert fit.shape == theory.shape
    if theory.shape in ("inverse-U", "U"):
        assert abs(fit.k_star.value - theory.k_exact) <= 2
        assert fit.k_star.lo <= fit.k_star.value <= fit.k_star.hi
    mean, lo, hi = fit.predict([1, 10, 100])
    assert np.all(lo <= mean) and np.all(mean <= hi)
    json.dumps(fit.to_dict())
    assert "alpha" in fit.summary()


def test_bilevel_intervals_cover_about_95_percent():
    truth = np.array([0.6, 0.85, 0.4])
    ks = np.arange(1, 21)
    sd = 0.01
    hits = []
    for seed in range(60):
        acc = bilevel_curve(*truth, ks) + np.random.default_rng(seed).normal(0, sd, ks.size)
        ci = fit_bilevel(ks, np.clip(acc, 0, 1), np.full(ks.size, sd), n_draws=50).conf_int(0.95)
        hits.append([ci[k][0] <= v <= ci[k][1] for k, v in zip(("alpha", "p1", "p2"), truth)])
    coverage = np.mean(hits, axis=0)
    assert np.all(coverage >= 0.83) and np.all(coverage <= 1.0), coverage


def test_bilevel_without_stderr_uses_residual_scale():
    ks = np.arange(1, 31)
    acc = bilevel_curve(0.6, 0.85, 0.4, ks) + np.random.default_rng(0).normal(0, 0.005, ks.size)
    fit = fit_bilevel(ks, acc)
    assert 0 < fit.stderr["alpha"] < 0.2


def test_mixture_recovers_atoms_on_their_grid_and_the_limit():
    ks = np.arange(1, 31)
    acc = bilevel_curve(0.6, 0.85, 0.4, ks)
    fit = fit_mixture(ks, acc, grid=[0.2, 0.4, 0.6, 0.85, 0.95], n_boot=20)
    np.testing.assert_allclose(fit.weights, [0, 0.4, 0, 0.6, 0], atol=1e-6)
    assert fit.params["limit"] == pytest.approx(0.6, abs=1e-6)
    mean, lo, hi = fit.predict([1, 5, 1000])
    np.testing.assert_allclose(mean, bilevel_curve(0.6, 0.85, 0.4, [1, 5, 1000]), atol=1e-6)
    assert fit.k_star.value == 5 and fit.k_star.kind == "argmax"
    json.dumps(fit.to_dict())


def test_mixture_on_the_default_grid_extrapolates_heterogeneous_data():
    p = np.random.default_rng(2).beta(3, 2, size=4000)
    ks = np.arange(1, 21)
    truth = binary_vote(p[:, None], np.arange(1, 1001)[None, :]).mean(axis=0)
    fit = fit_mixture(ks, truth[:20], np.full(20, 0.002), n_boot=30)
    mean, _, _ = fit.predict(np.arange(1, 1001))
    assert np.mean(np.abs(mean - truth)) < 0.02


def test_per_query_law_follows_the_authors_recipe():
    pools = [binary_pool(0, 150, 200), binary_pool(1, 60, 200),
             Pool("tie", ("A", "A", "B", "B", "C"), "A")]
    fit = fit_per_query_law(pools, targets="exact")
    assert fit.easy.tolist() == [True, False, True]
    assert fit.ties.tolist() == [1, 1, 2]
    assert fit.ks.tolist() == [2, 5, 10, 20, 50, 100]
    curves = fit.query_curves([1000])
    assert curves[0, 0] == pytest.approx(1.0, abs=1e-3)   # easy: G1 -> 1
    assert curves[1, 0] == pytest.approx(0.0, abs=1e-3)   # hard: G2 -> 0
    assert curves[2, 0] <= 0.5 + 1e-9                       # tied mode: divided by r = 2
    exact = vote_accuracy(pools[0], fit.ks)
    np.testing.assert_allclose(fit.query_curves(fit.ks)[0], exact, atol=0.02)
    assert np.all(fit.params["a1"] >= 1e-6) and np.all(fit.params["a2"] >= 1e-6)
    json.dumps(fit.to_dict())


def test_per_query_law_mc_targets_and_fit_max_k():
    pools = [binary_pool(i, c, 100) for i, c in enumerate((80, 30, 55))]
    a = fit_per_query_law(pools, rng=5, fit_max_k=20)
    b = fit_per_query_law(pools, rng=5, fit_max_k=20)
    assert a.ks.tolist() == [2, 5, 10, 20] and a.target_kind == "mc"
    np.testing.assert_array_equal(a.params["a3"], b.params["a3"])
    mean, lo, hi = a.predict([1, 10, 100])
    assert np.all((lo <= mean) & (mean <= hi))
    with pytest.raises(ValueError, match="fit_max_k"):
        fit_per_query_law(pools, fit_max_k=1)
    with pytest.raises(ValueError, match="targets"):
        fit_per_query_law(pools, targets="bootstrap")


def test_buckets_partition_the_pools():
    pools = [binary_pool(i, c, 10) for i, c in enumerate((9, 8, 2, 5, 7, 1, 3))]
    eh = bucket_pools(pools)
    assert [len(eh[k]) for k in ("easy", "hard", "tied")] == [3, 3, 1]
    q = bucket_pools(pools, "quantile", n_quantiles=3)
    assert sum(len(v) for v in q.values()) == len(pools)
    assert list(q)[0] == "q1" and all(p.answers.count("A") >= 7 for p in q["q1"])
    with pytest.raises(ValueError, match="scheme"):
        bucket_pools(pools, "kmeans")


def test_report_is_json_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    pools = [binary_pool(i, rng.binomial(60, 0.85 if rng.random() < 0.6 else 0.4), 60)
             for i in range(80)]
    report = scaling_report(pools, np.arange(1, 101), fit_max_k=20)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_queries"] == 80 and data["n_generations"] == 80 * 60
    assert set(data["groups"]) >= {"overall", "easy", "hard"}
    overall = report.groups["overall"]
    assert overall.k_star.lo <= overall.k_star.value <= overall.k_star.hi
    assert set(overall.fits) == {"bilevel", "per_query_law", "mixture", "answer_dist"}
    assert overall.recommended in overall.fits and overall.shape in ("inverse-U", "flat")  # 80 queries: a weak peak
    for g in data["groups"].values():
        assert {"n_queries", "acc", "se", "shape", "k_star", "recommended", "fits"} <= set(g)
        for f in g["fits"].values():
            assert {"predicted", "mae_fitted_range", "params", "stderr"} <= set(f)
    np.testing.assert_allclose(overall.acc[:3], np.mean([vote_accuracy(p, [1, 2, 3])
                                                         for p in pools], axis=0))
    assert "recommended fit" in report.summary()
    path = plot_scaling(report, tmp_path / "scaling.png")
    assert path.stat().st_size > 10_000


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="acc"):
        fit_bilevel([1, 2, 3], [0.5, 1.2, 0.4])
    with pytest.raises(ValueError, match="stderr"):
        fit_bilevel([1, 2, 3], [0.5, 0.6, 0.4], [0.1, 0.1])
    with pytest.raises(ValueError, match="level"):
        fit_bilevel([1, 2, 3, 4], [0.5, 0.6, 0.6, 0.7]).predict([1], level=1.5)
    with pytest.raises(ValueError, match="grid"):
        fit_mixture([1, 2, 3], [0.5, 0.6, 0.6], grid=[0.5, 1.5])
    with pytest.raises(ValueError, match="at least one pool"):
        scaling_report([], [1, 2])
