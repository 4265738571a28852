"""A small real run on the bundled SmolLM2-135M model (9 llama.cpp generations, one call per query)."""


from llmnet import load_network
from llmnet.execute import RunConfig, run_network
from llmnet.tasks.datasets import arithmetic
from tests.conftest import GRAPHS, needs_local


@needs_local
def test_real_vote_on_smollm2(tmp_path):
    net = load_network(GRAPHS / "vote.yaml", {"K": 3})
    queries = arithmetic(3, digits=(1, 1), seed=0)
    cache = tmp_path / "c.sqlite"
    first = run_network(net, queries, RunConfig(progress=False, cache_path=cache, out_dir=tmp_path / "a"))
    s = first.summary
    assert s["errors"] == 0 and s["calls"] == 3 and s["samples"] == 9 and s["cache_hits"] == 0  # a call per query
    assert s["prompt_tokens"] >= 9 * 30 and s["completion_tokens"] > 0 and s["cost_usd"] == 0
    assert all(r["trace"]["gen"]["answers"] and r["answer"] is not None for r in first.results)
    assert all(a is None or a.lstrip("-").isdigit() for r in first.results for a in r["trace"]["gen"]["answers"])
    # the cache makes a real model's run reproducible: the same run again is all cache, the same answers
    # (llama.cpp with a per-call seed is close to, but not bit-for-bit, deterministic across runs)
    again = run_network(net, queries, RunConfig(progress=False, cache_path=cache))
    assert again.summary["calls"] == 0 and again.summary["cache_hits"] == 9
    assert [r["answer"] for r in again.results] == [r["answer"] for r in first.results]
