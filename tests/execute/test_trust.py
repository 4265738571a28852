"""Runs you can trust: errors are not wrong answers, one run per output folder, exact books."""

import json

import pytest

from llmnet import loads_network
from llmnet.backends.simulated import SimulatedBackend
from llmnet.errors import BackendRejected, BackendUnavailable, LlmnetError
from llmnet.execute import RunConfig, run_network
from llmnet.execute.totals import wilson_interval
from llmnet.tasks.datasets import arithmetic
from tests.execute.test_executor import VOTE, Recording, net


def failing_on(ids):
    """A backend that fails every call for the queries in ``ids`` (BackendRejected: not retried)."""
    return lambda req, i: BackendRejected("bad request") if req.query.id in ids else None


def test_errors_are_not_wrong_answers_and_are_grouped(tmp_path):
    network = net(VOTE)
    queries = arithmetic(20)
    bad = {queries[3].id, queries[7].id}
    backend = Recording(SimulatedBackend("sim", network.spec.models["sim"]), fail=failing_on(bad))
    report = run_network(network, queries, RunConfig(out_dir=tmp_path, backends={"sim": backend}))
    s = report.summary
    assert s["errors"] == 2 and s["graded"] == 18 and s["queries"] == 20
    assert s["accuracy"] == pytest.approx(s["correct"] / 18)
    assert s["accuracy_all"] == pytest.approx(s["correct"] / 20)
    lo, hi = s["accuracy_ci95"]
    assert lo < s["accuracy"] < hi
    assert s["errors_by_type"] == {"BackendRejected": {"count": 2, "example": "BackendRejected: bad request",
                                                       "example_id": queries[3].id}}
    assert json.loads((tmp_path / "summary.json").read_text())["errors_by_type"] == s["errors_by_type"]
    errored = [r for r in report.results if r["error"]]
    assert len(errored) == 2 and all(r["correct"] is None for r in errored)


def test_rerun_retries_errored_queries_only(tmp_path):
    network = net(VOTE)
    queries = arithmetic(20)
    bad = {queries[3].id, queries[7].id}
    first = Recording(SimulatedBackend("sim", network.spec.models["sim"]), fail=failing_on(bad))
    run_network(network, queries, RunConfig(out_dir=tmp_path, backends={"sim": first}))
    second = Recording(SimulatedBackend("sim", network.spec.models["sim"]))
    notes = []
    report = run_network(network, queries, RunConfig(out_dir=tmp_path, backends={"sim": second}, log=notes.append))
    assert second.calls == 2  # only the two errored queries ran again
    assert notes == ["resuming: 18 of 20 queries already finished"]
    assert report.summary["errors"] == 0 and report.summary["graded"] == 20
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(l)["id"] for l in lines] == [q.id for q in queries]
    clean = run_network(network, queries, RunConfig(out_dir=tmp_path / "clean"))
    strip = lambda recs: [{k: v for k, v in r.items() if k != "latency_s" and k != "trace"} for r in recs]
    assert strip(map(json.loads, lines)) == strip(clean.results)


def test_a_different_run_in_the_same_folder_is_refused(tmp_path):
    network = net(VOTE)
    run_network(network, arithmetic(10), RunConfig(out_dir=tmp_path))
    for other_net, other_queries, seed in ((network, arithmetic(12), 0), (network, arithmetic(10, seed=3), 0),
                                           (net(VOTE.replace("samples: 5", "samples: 3")), arithmetic(10), 0),
                                           (network, arithmetic(10), 1)):
        with pytest.raises(LlmnetError, match="--overwrite"):
            run_network(other_net, other_queries, RunConfig(out_dir=tmp_path, seed=seed))
    report = run_network(network, arithmetic(12), RunConfig(out_dir=tmp_path, overwrite=True))
    assert report.summary["queries"] == 12
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 12


def test_a_refused_folder_leaves_no_cache_behind(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(LlmnetError, match="file"):
            run_network(net(VOTE), arithmetic(3), RunConfig(out_dir=bad, cache_path=tmp_path / "c.sqlite"))
    assert not (tmp_path / "c.sqlite").exists()


def test_stale_temp_file_of_a_killed_rewrite_is_removed(tmp_path):
    run_network(net(VOTE), arithmetic(5), RunConfig(out_dir=tmp_path))
    stale = tmp_path / ".results.jsonl.999999.tmp"
    stale.write_text("half a file")
    run_network(net(VOTE), arithmetic(5), RunConfig(out_dir=tmp_path))
    assert not stale.exists()


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)  # textbook value: 0.490 - 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_retries_count_attempts_beyond_each_requests_first(tmp_path):
    network = net(VOTE, "limits: {concurrency: 8, retries: 2, backoff: 0}")
    queries = arithmetic(6)
    # the first query always fails (3 attempts, 2 of them retries); every other one succeeds at once
    fail = lambda req, i: BackendUnavailable("down") if req.query.id == queries[0].id else None
    backend = Recording(SimulatedBackend("sim", network.spec.models["sim"]), fail=fail)
    s = run_network(network, queries, RunConfig(backends={"sim": backend})).summary
    assert s["attempts"] == 3 + 5 and s["calls"] == 5
    assert s["retries"] == 2


def test_library_draws_no_progress_by_default(capsys):
    run_network(net(VOTE), arithmetic(3), RunConfig())
    assert RunConfig().progress is False
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_to_yaml_keeps_parameters_working_with_set(tmp_path):
    from llmnet import load_network

    src = tmp_path / "p.yaml"
    src.write_text("params: {K: 5}\nmodels: {sim: {backend: simulated, model: s}}\nnodes:\n"
                   "  gen: {kind: generator, model: sim, samples: '${K}'}\n  vote: {kind: vote, inputs: [gen]}\n")
    saved = tmp_path / "saved.yaml"
    load_network(src).save(saved)
    assert load_network(saved, {"K": 15}).spec.nodes["gen"].samples == 15
    assert loads_network(saved.read_text()).spec.nodes["gen"].samples == 5


def test_node_latency_is_wall_time_not_a_sum_over_samples():
    """Ten samples as ten concurrent 0.05 s calls take ~0.05 s of the node's time, not 0.5 s."""
    network = loads_network("models: {sim: {backend: simulated, model: s, latency_s: 0.05, limits: {concurrency: 64}}}"
                            "\nnodes:\n  gen: {kind: generator, model: sim, samples: 10}\n"
                            "  vote: {kind: vote, inputs: [gen]}\n")
    backend = SimulatedBackend("sim", network.spec.models["sim"])
    backend.supports_n = False  # one call per sample, run concurrently
    report = run_network(network, arithmetic(8), RunConfig(backends={"sim": backend}, concurrency=8))
    for rec in report.results:
        assert rec["trace"]["gen"]["usage"]["latency_s"] <= rec["latency_s"] + 1e-6
        assert rec["trace"]["gen"]["usage"]["latency_s"] < 0.3
    assert report.summary["per_node"]["gen"]["latency_s"] < 0.3
