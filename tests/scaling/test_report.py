"""Shapes, K*, bucket merging, the recommended fit, recorded pools and ``scale --pools``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from llmnet.errors import DatasetError
from llmnet.scaling.laws import fit_bilevel
from llmnet.scaling.pools import read_pools
from llmnet.scaling.report import merge_small, scaling_report
from llmnet.scaling.shape import curve_shape, k_star_band, paired_bootstrap
from llmnet.scaling.vote import Pool, vote_accuracy_pools
from tests.conftest import ROOT

REAL = ROOT.parent / "shared" / "data" / "pools" / "last_letters_gpt35.jsonl"


def binary_pools(rng, n, alpha, p1, p2, m=200):
    return [Pool(f"q{i}", tuple("A" if a else "B" for a in rng.random(m) < (p1 if rng.random() < alpha else p2)),
                 "A") for i in range(n)]


@pytest.mark.parametrize(("alpha", "p1", "p2", "want"), [
    (0.6, 0.85, 0.4, "inverse-U"), (0.4, 0.65, 0.1, "U"), (1.0, 0.8, 0.3, "increasing"), (0.0, 0.8, 0.3, "decreasing")])
def test_shape_of_synthetic_pools_with_known_truth(alpha, p1, p2, want):
    pools = binary_pools(np.random.default_rng(1), 300, alpha, p1, p2)
    ks = np.arange(1, 60)
    acc = vote_accuracy_pools(pools, ks)
    assert curve_shape(acc.mean(0), paired_bootstrap(acc, 500, 0)) == want


def test_noise_is_flat_and_a_real_rise_is_not():
    rng = np.random.default_rng(0)
    ks = np.arange(1, 30)
    shapes = [curve_shape(c.mean(0), paired_bootstrap(c, 300, 0))
              for c in (0.5 + rng.normal(0, 0.05, (40, ks.size)) for _ in range(40))]
    assert shapes.count("flat") >= 34  # no trend: every wiggle is noise (5% false calls allowed per test)
    curves = 0.5 + rng.normal(0, 0.05, (40, ks.size))
    assert curve_shape(np.full(ks.size, 0.7)) == "flat"
    rising = curves + np.linspace(0, 0.2, ks.size)
    assert curve_shape(rising.mean(0), paired_bootstrap(rising, 500, 0)) == "increasing"


@pytest.mark.parametrize("seed", range(8))
def test_k_star_lies_in_its_interval(seed):
    rng = np.random.default_rng(seed)
    pools = binary_pools(rng, 60, rng.uniform(0.2, 0.8), rng.uniform(0.55, 0.9), rng.uniform(0.1, 0.45), m=30)
    ks = np.arange(1, 120)
    acc = vote_accuracy_pools(pools, ks)
    k = k_star_band(ks, acc.mean(0), paired_bootstrap(acc, 300, seed))
    assert k.lo <= k.value <= k.hi and k.value <= k.argmax
    assert acc.mean(0)[k.argmax - 1] == acc.mean(0).max()


def test_bilevel_at_one_half_is_monotone_without_k_star():
    ks = np.arange(1, 6)  # the real last-letters curve on K <= 5 (issue 14: was "inverse-U", K* = 35)
    fit = fit_bilevel(ks, [0.8036, 0.8036, 0.81878, 0.82066, 0.82363], [0.01537, 0.01537, 0.01589, 0.01592, 0.01606])
    assert fit.theory.shape == "monotone" and fit.k_star is None
    assert np.all(np.isnan(fit.predict(ks)[1]))  # no band drawn from a boundary fit
    json.dumps(fit.to_dict())
    assert "monotone" in fit.summary()


def test_small_buckets_merge_into_a_neighbour():
    groups = {"easy": list(range(30)), "tied": [100, 101], "hard": list(range(200, 240))}
    merged = merge_small(groups, ["easy", "tied", "hard"])
    assert merged["easy"][0] == ("easy", "tied") and len(merged["easy"][1]) == 32 and "tied" not in merged
    assert merge_small({"q1": [1] * 5, "q2": [2] * 30, "q3": [3] * 12}, ["q1", "q2", "q3"])["q2"][0] == ("q2", "q1")
    assert merge_small({"easy": [1] * 30, "hard": [2] * 3}, ["easy", "tied", "hard"]) == {}


def test_read_pools_reports_file_and_line(tmp_path):
    good = {"id": "a", "answer": "x", "samples": ["x", "y", None]}
    cases = [({"id": "a", "answer": "x"}, "missing 'samples'"), ({**good, "samples": []}, "non-empty"),
             ({**good, "verdicts": [1, 0]}, "2 verdicts for 3 samples"), ({**good, "extra": 1}, "unknown field"),
             ({**good, "answer": None}, "null"), ({**good, "samples": [["x"]]}, "samples\\[0\\]")]
    for obj, message in cases:
        path = tmp_path / "p.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps({**obj, "id": "b"} if "id" in obj else obj) + "\n")
        with pytest.raises(DatasetError, match=f"p.jsonl:2: .*{message}"):
            read_pools(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DatasetError, match="p.jsonl:2: duplicate id 'a'"):
        read_pools(path)
    path.write_text(json.dumps({**good, "verdicts": [1, 0, True]}) + "\n")
    assert read_pools(path)[0].verdicts == (True, False, True)


def _real_pools(n, half):
    rows = [json.loads(line) for line in REAL.read_text().splitlines()[:n]]
    cut = slice(0, 20) if half == 0 else slice(20, 40)
    return [Pool(r["id"], tuple(r["samples"][cut]), r["answer"]) for r in rows]


@pytest.mark.skipif(not REAL.is_file(), reason="the shared real pools are not checked out beside the repo")
def test_recommended_fit_on_held_out_real_halves_beats_the_authors_law():
    """Pools built from each half of every query's real samples (other data than the full
    pools): the recommended fit (fit on K <= 5) is no worse than the authors' law per group."""
    ks = np.arange(1, 121)
    for half in (0, 1):
        report = scaling_report(_real_pools(240, half), ks, fit_max_k=5, n_boot=200)
        for name, g in report.groups.items():
            mae = {m: float(np.mean(np.abs(f.predict(ks)[0] - g.acc))) for m, f in g.fits.items() if f is not None}
            assert mae[g.recommended] <= mae["per_query_law"] + 1e-4, (half, name, mae)
            assert g.k_star.lo <= g.k_star.value <= g.k_star.hi
        assert report.groups["overall"].shape == "increasing" and report.groups["hard"].shape == "decreasing"


def test_cli_scale_pools(tmp_path):
    rng = np.random.default_rng(3)
    lines = [json.dumps({"id": p.query_id, "answer": p.correct, "samples": list(p.answers)})
             for p in binary_pools(rng, 40, 0.6, 0.85, 0.4, m=40)]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "llmnet", "scale", "--pools", str(tmp_path / "p.jsonl"), "--k", "1-60",
           "--fit-max-k", "9", "--out", str(tmp_path / "out")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "out" / "scaling.json").read_text())
    assert data["ks"] == list(range(1, 61)) and data["method"] == "vote"
    for g in data["groups"].values():
        assert g["k_star"]["lo"] <= g["k_star"]["value"] <= g["k_star"]["hi"] and g["recommended"] in g["fits"]
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n{\"id\": 1, \"answer\": \"A\"}\n")
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "bad.jsonl")] + cmd[6:], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "bad.jsonl:2: missing 'samples'" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_scale_needs_no_k_default(tmp_path):
    (tmp_path / "net.yaml").write_text(
        "models: {sim: {backend: simulated, model: s}}\ntask: {prompt: \"Q: {question}\\nA:\"}\n"
        "nodes:\n  gen: {kind: generator, model: sim, samples: \"${K}\"}\n  vote: {kind: vote, inputs: [gen]}\n"
        "output: vote\n")
    cmd = [sys.executable, "-m", "llmnet", "scale", str(tmp_path / "net.yaml"), "--data", "bilevel:n=30",
           "--k", "1-9", "--pool", "9", "--out", str(tmp_path / "out"), "--no-cache"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "scaling.json").read_text())["pool_size"] == 9
