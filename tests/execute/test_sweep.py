"""llmnet sweep: any ${PARAM} over a grid, through the cache; accuracy with Wilson intervals, cost, calls."""

import json
import subprocess
import sys

import numpy as np
import pytest

from llmnet.errors import SpecError
from llmnet.execute.sweep import grid_points, parse_grid, sweep, wilson_interval
from llmnet.tasks.datasets import arithmetic
from tests.conftest import GRAPHS, needs_local

CHAIN = """
name: chain-${L}
params: {L: 1, K: 1}
models: {sim: {backend: simulated, model: s, skill: 0.6, price: {input: 1, output: 1}}}
nodes:
  gen: {kind: generator, model: sim, samples: "${K}"}
  ref: {kind: refine, inputs: [gen], rounds: "${L}", model: sim, prompt: "{question} was {previous}"}
  vote: {kind: vote, inputs: [ref]}
output: vote
"""


def test_wilson_interval_known_values_and_coverage():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    rng = np.random.default_rng(0)
    hits = [lo <= 0.3 <= hi for lo, hi in (wilson_interval(int(k), 40) for k in rng.binomial(40, 0.3, 4000))]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_parse_grid_types_values_and_rejects_mistakes():
    assert parse_grid(["L=1,2,4", "T=0.2,x"]) == {"L": [1, 2, 4], "T": [0.2, "x"]}
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    for bad in (["L"], ["L="], ["L=1", "L=2"], []):
        with pytest.raises(SpecError):
            parse_grid(bad)


def test_sweep_counts_calls_per_point_and_reuses_the_cache(write, tmp_path):
    file = write(CHAIN)
    qs = arithmetic(30, digits=(1, 2), seed=1)
    result = sweep(file, {"L": [0, 1, 2, 4], "K": [1, 3]}, qs, cache_path=tmp_path / "c.sqlite")
    rows = {(r["params"]["L"], r["params"]["K"]): r for r in result["points"]}
    assert len(rows) == 8
    for (L, K), r in rows.items():
        assert r["samples"] == 30 * (K + L)  # K generations, then one sample per refine round
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
        assert r["correct"] == round(r["accuracy"] * r["graded"])
    # a longer chain repeats the shorter chain's calls: the cache pays for them once
    assert rows[(2, 1)]["cache_hits"] >= rows[(1, 1)]["samples"] - 30  # at least the shared prefix (dup prompts aside)
    assert rows[(4, 1)]["calls"] < rows[(4, 1)]["samples"]


def test_cli_sweep_writes_json_and_plot(write, tmp_path):
    file = write(CHAIN)
    out = tmp_path / "sw"
    done = subprocess.run([sys.executable, "-m", "llmnet", "sweep", str(file), "--grid", "L=0,1,2", "--data",
                           "arithmetic:n=20", "--out", str(out), "--cache", str(tmp_path / "c.sqlite"),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert [p["params"]["L"] for p in data["points"]] == [0, 1, 2]
    assert (out / "sweep.png").stat().st_size > 10_000
    assert (out / "points" / "L=1" / "results.jsonl").exists()
    bad = subprocess.run([sys.executable, "-m", "llmnet", "sweep", str(file), "--grid", "Q=1,2", "--data",
                          "arithmetic:n=5", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no parameter 'Q'" in bad.stderr and "Traceback" not in bad.stderr


@needs_local
@pytest.mark.slow
def test_sweep_of_the_shipped_refine_chain_on_the_bundled_model(tmp_path):
    result = sweep(GRAPHS / "refine_chain.yaml", {"L": [0, 1, 2]}, arithmetic(3, digits=(1, 1), seed=2),
                   cache_path=tmp_path / "c.sqlite")
    assert [r["errors"] for r in result["points"]] == [0, 0, 0]
    assert [r["samples"] for r in result["points"]] == [3, 6, 9]
    assert result["points"][2]["cache_hits"] >= 6  # L=2 reuses the L=1 chain's calls
