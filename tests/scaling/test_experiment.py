"""llmnet scale: pools through the executor, exact curves, fits, JSON and PNG."""

import json
import subprocess
import sys

import pytest

from llmnet import loads_network
from llmnet.errors import SpecError
from llmnet.scaling.experiment import draw_pools, parse_ks, pool_network
from llmnet.tasks.datasets import bilevel
from tests.conftest import ROOT

NET = """
models: {sim: {backend: simulated, model: s, distractors: 2, judge_accuracy: 0.9}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 5}
  %s
"""


def test_parse_ks():
    assert parse_ks("1,3,5,...,11") == [1, 3, 5, 7, 9, 11]
    assert parse_ks("1-4,10") == [1, 2, 3, 4, 10]
    for bad in ("0,1", "a", "1,...,5", "5,3,...,9", ""):
        with pytest.raises(SpecError):
            parse_ks(bad)


def test_pools_reuse_the_cache_and_carry_verdicts(tmp_path):
    net = loads_network(NET % "fv: {kind: filter_vote, model: sim, inputs: [gen]}")
    cache = tmp_path / "c.sqlite"
    small, s1 = draw_pools(net, bilevel(10), 20, cache)
    big, s2 = draw_pools(net, bilevel(10), 30, cache)
    assert all(len(p.answers) == 20 and len(p.verdicts) == 20 for p in small)
    assert [p.answers[:20] for p in big] == [p.answers for p in small]
    assert s2["cache_hits"] == s1["samples"]  # the larger pool paid only for the new samples
    with pytest.raises(SpecError, match="exactly one generator"):
        pool_network(loads_network(NET % "g2: {kind: generator, model: sim}\n  v: {kind: vote, inputs: [gen, g2]}"),
                     5)


def test_cli_scale_writes_json_and_png(tmp_path):
    (tmp_path / "net.yaml").write_text(NET % "vote: {kind: vote, inputs: [gen]}")
    cmd = [sys.executable, "-m", "llmnet", "scale", str(tmp_path / "net.yaml"), "--data",
           "bilevel:n=120,alpha=0.6,p1=0.85,p2=0.4", "--k", "1,3,5,...,99", "--pool", "100", "--fit-max-k", "20",
           "--out", str(tmp_path / "out"), "--no-cache"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "out" / "scaling.json").read_text())
    assert data["method"] == "vote" and data["pool_size"] == 100 and data["samples_used"] == 120 * 100
    assert {"overall", "easy", "hard"} <= set(data["groups"])
    assert (tmp_path / "out" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(cmd[:-3] + ["--k", "0,1", "--out", str(tmp_path / "o2")], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--k" in bad.stderr and "Traceback" not in bad.stderr
