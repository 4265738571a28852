"""The executor on the simulated backend and on test doubles."""

import asyncio
import json
import time

import pytest

from llmnet import loads_network
from llmnet.backends.base import Backend
from llmnet.backends.simulated import SimulatedBackend
from llmnet.errors import BackendRejected, BackendUnavailable, RateLimited
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cache import SampleCache
from llmnet.tasks.datasets import arithmetic, bilevel
from llmnet.tasks.query import Query

SIM = "models: {sim: {backend: simulated, model: s, skill: 0.7, price: {input: 1, output: 2}, %s}}\n"


def net(body: str, limits: str = "limits: {concurrency: 8}") -> object:
    return loads_network(SIM % limits + "task: {prompt: 'Q: {question}\\nA:'}\n" + body)


VOTE = "nodes:\n  gen: {kind: generator, model: sim, samples: 5}\n  vote: {kind: vote, inputs: [gen]}\n"


class Recording(Backend):
    """Wraps the simulated backend; records calls and can fail on purpose."""

    supports_n = True

    def __init__(self, inner, fail=None, latency=0.0):
        super().__init__(inner.name, inner.spec)
        self.inner, self.fail, self.latency = inner, fail or (lambda req, i: None), latency
        self.calls, self.in_flight, self.max_in_flight, self.times = 0, 0, 0, []

    @property
    def identity(self):
        return self.inner.identity

    async def complete(self, request):
        self.calls += 1
        self.times.append(time.monotonic())
        exc = self.fail(request, self.calls)
        if exc:
            raise exc
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return await self.inner.complete(request)
        finally:
            self.in_flight -= 1


def recording(network, **kw):
    return Recording(SimulatedBackend("sim", network.spec.models["sim"]), **kw)


def test_vote_accuracy_tracks_skill_and_is_reproducible():
    n = net(VOTE)
    qs = [Query(q.id, q.question, q.answer) for q in arithmetic(300, seed=1)]  # no difficulty: p = skill
    a = run_network(n, qs)
    b = run_network(n, qs)
    assert [r["answer"] for r in a.results] == [r["answer"] for r in b.results]
    # p = 0.7 per sample, vote over 5 with a 2:1:1 distractor split: clearly above one sample's 0.7
    assert 0.8 < a.summary["accuracy"] < 0.97
    assert a.summary["calls"] == 300 and a.summary["samples"] == 1500


def test_usage_adds_up_per_node_model_and_query():
    n = net("nodes:\n  gen: {kind: generator, model: sim, samples: 4}\n  fv: {kind: filter_vote, model: sim, "
            "inputs: [gen]}\n")
    rep = run_network(n, arithmetic(20))
    s = rep.summary
    assert s["calls"] == 20 * (1 + 4)
    assert s["per_node"]["gen"]["samples"] == 80 and s["per_node"]["fv"]["calls"] == 80
    assert s["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rep.results))
    assert s["cost_usd"] == pytest.approx((s["prompt_tokens"] * 1 + s["completion_tokens"] * 2) / 1e6)
    assert s["per_model"]["sim"]["cost_usd"] == pytest.approx(s["cost_usd"])


def test_gate_runs_only_the_chosen_branch():
    n = net("""
subgraphs:
  cheap: {nodes: {one: {kind: generator, model: sim}}}
  voted: {nodes: {g: {kind: generator, model: sim, samples: 7}, v: {kind: vote, inputs: [g]}}, output: v}
nodes:
  route:
    kind: gate
    router: {kind: rule, rules: [{field: digits, op: ge, value: 2, branch: strong}], default: cheap}
    branches: {cheap: cheap, strong: voted}
""")
    qs = arithmetic(30, digits=(1, 3))
    rep = run_network(n, qs)
    for q, r in zip(qs, rep.results):
        strong = q.fields["digits"] >= 2
        assert r["trace"]["route"]["branch"] == ("strong" if strong else "cheap")
        assert r["samples"] == (7 if strong else 1)
        assert ("route/strong/g" in r["trace"]) == strong and ("route/cheap/one" in r["trace"]) != strong
    assert rep.summary["branches"]["route"] == {"cheap": 10, "strong": 20}


def test_parallel_nodes_start_when_their_inputs_are_done():
    n = net("""
nodes:
  a: {kind: generator, model: sim, samples: 3}
  b: {kind: generator, model: sim, samples: 3, seed: 100}
  ja: {kind: judge, model: sim, inputs: [a]}
  v: {kind: vote, inputs: [ja, b]}
""")
    backend = recording(n, latency=0.05)
    t0 = time.monotonic()
    rep = run_network(n, [Query("q", "1 + 1", "2")], RunConfig(progress=False, backends={"sim": backend}))
    elapsed = time.monotonic() - t0
    assert rep.results[0]["error"] is None and rep.results[0]["calls"] == 2 + 3
    # a and b run together, then the 3 judge calls together: about 2 latencies, not 5
    assert elapsed < 4 * 0.05 + 0.5
    assert backend.max_in_flight >= 2


def test_one_query_failing_does_not_stop_the_run():
    n = net(VOTE)
    qs = arithmetic(10)
    bad = qs[3].id
    backend = recording(n, fail=lambda req, i: BackendRejected("400 bad request") if req.query.id == bad else None)
    rep = run_network(n, qs, RunConfig(progress=False, backends={"sim": backend}))
    errors = {r["id"]: r["error"] for r in rep.results if r["error"]}
    assert list(errors) == [bad] and "BackendRejected: 400 bad request" in errors[bad]
    assert rep.summary["errors"] == 1 and rep.summary["queries"] == 10


def test_retries_are_counted_and_answers_unchanged():
    n = net(VOTE, "limits: {concurrency: 4, retries: 3, backoff: 0.001}")
    qs = arithmetic(12)
    clean = run_network(n, qs)
    tries = {}

    def fail(req, i):  # every request fails twice (429, then 503), then succeeds
        key = (req.query.id, req.seed)
        tries[key] = tries.get(key, 0) + 1
        return {1: RateLimited("429", retry_after=0.001), 2: BackendUnavailable("503")}.get(tries[key])

    flaky = recording(n, fail=fail)
    rep = run_network(n, qs, RunConfig(progress=False, backends={"sim": flaky}))
    assert [r["answer"] for r in rep.results] == [r["answer"] for r in clean.results]
    assert rep.summary["calls"] == 12 and rep.summary["attempts"] == 36 and rep.summary["retries"] == 24


def test_retry_budget_exhausted_fails_only_that_query():
    n = net(VOTE, "limits: {retries: 2, backoff: 0.001}")
    qs = arithmetic(5)
    down = recording(n, fail=lambda req, i: BackendUnavailable("503 down") if req.query.id == qs[0].id else None)
    rep = run_network(n, qs, RunConfig(progress=False, backends={"sim": down}))
    assert rep.results[0]["error"] == "BackendUnavailable: 503 down" and rep.results[0]["attempts"] == 3
    assert all(r["error"] is None for r in rep.results[1:])


def test_in_flight_cap_is_never_exceeded():
    n = net(VOTE, "limits: {concurrency: 3}")
    backend = recording(n, latency=0.01)
    run_network(n, arithmetic(40), RunConfig(progress=False, backends={"sim": backend}))
    assert backend.max_in_flight == 3


def test_request_rate_limit_is_respected():
    # 600 rpm = 10/s with a one-second bucket: 40 calls cannot finish before (40 - 10) / 10 = 3 s
    n = net(VOTE, "limits: {rpm: 600, concurrency: 50}")
    backend = recording(n)
    run_network(n, arithmetic(40), RunConfig(progress=False, backends={"sim": backend}))
    span = backend.times[-1] - backend.times[0]
    assert backend.calls == 40 and span >= 2.7
    for t in backend.times:  # in any one-second window: at most the bucket (10) + 10/s x 1 s, plus one
        assert sum(t <= u < t + 1.0 for u in backend.times) <= 21


def test_cache_k10_after_k5_pays_only_new_samples(tmp_path):
    cache = tmp_path / "c.sqlite"
    body = "nodes:\n  gen: {kind: generator, model: sim, samples: '${K}'}\n  vote: {kind: vote, inputs: [gen]}\n"
    text = SIM % "limits: {}" + "params: {K: 5}\n" + body
    qs = arithmetic(20)
    first = run_network(loads_network(text), qs, RunConfig(progress=False, cache_path=cache))
    second = run_network(loads_network(text, {"K": 10}), qs, RunConfig(progress=False, cache_path=cache))
    assert first.summary["cache_hits"] == 0 and first.summary["samples"] == 100
    assert second.summary["cache_hits"] == 100 and second.summary["samples"] == 200
    paid = second.summary["samples"] - second.summary["cache_hits"]
    assert paid == 100 and second.summary["completion_tokens"] == 100 * 4
    uncached = run_network(loads_network(text, {"K": 10}), qs)
    assert [r["answer"] for r in uncached.results] == [r["answer"] for r in second.results]
    assert SampleCache(cache).integrity_ok() and len(SampleCache(cache)) == 200


def test_max_cost_stops_before_the_budget(tmp_path):
    n = net(VOTE)
    rep = run_network(n, arithmetic(200), RunConfig(progress=False, max_cost=0.002, out_dir=tmp_path,
                                                    concurrency=4))
    s = rep.summary
    assert s["stopped"] and "--max-cost" in s["stopped"] and not s["complete"]
    assert 0 < s["cost_usd"] <= 0.002 and s["queries"] < 200
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == s["queries"] and all(json.loads(l)["error"] is None for l in lines)


def test_bilevel_p_correct_is_used():
    n = net("nodes:\n  gen: {kind: generator, model: sim, samples: 1}\n")
    rep = run_network(n, bilevel(2000, alpha=0.5, p1=0.9, p2=0.2))
    assert rep.summary["accuracy"] == pytest.approx(0.55, abs=0.04)


def test_select_and_filter_nodes_run():
    n = net("nodes:\n  gen: {kind: generator, model: sim, samples: 4}\n  f: {kind: filter, model: sim, "
            "inputs: [gen]}\n  pick: {kind: select, model: sim, inputs: [f]}\n")
    rep = run_network(n, arithmetic(10))
    for r in rep.results:
        assert r["error"] is None and r["trace"]["pick"]["how"] in ("picked", "fallback-vote")
        assert len(r["trace"]["f"]["verdicts"]) == 4


def test_remembered_answers_never_cross_answer_specs_or_choices(monkeypatch):
    """The engine remembers each text's extracted answer; the same text read under another answer
    spec (a gate branch's) or other choices is read afresh, and the memory stays bounded."""
    from llmnet.execute import engine as engine_module
    from llmnet.execute.engine import Engine, QueryRun
    from llmnet.network.spec import AnswerSpec

    monkeypatch.setattr(engine_module, "ANSWER_MEMO", 8)
    engine = Engine(net(VOTE))
    number, first_line = AnswerSpec(kind="number"), AnswerSpec(kind="text")
    plain = Query(id="a", question="q", answer="1")
    mc = Query(id="b", question="q", answer="B", choices=("x", "y"))
    text = "B) 42 apples"
    assert QueryRun(engine, plain, "p", number).extract(text) == "42"
    assert QueryRun(engine, plain, "p", first_line).extract(text) == "b) 42 apples"  # text answers are lowercased
    assert QueryRun(engine, mc, "p", AnswerSpec(kind="choice")).extract(text) == "B"
    assert QueryRun(engine, plain, "p", AnswerSpec(kind="choice")).extract("E") is None  # labels A-D without choices
    assert QueryRun(engine, plain, "p", number).extract(text) == "42"  # remembered
    for i in range(20):
        QueryRun(engine, plain, "p", number).extract(f"{i}")
    assert len(engine.answers) <= 8


def test_queries_on_one_prompt_take_turns_even_when_some_are_cancelled():
    """The per-prompt turns that keep a sample from being paid twice in one process: first come, first
    served; a query cancelled while waiting is skipped, and one cancelled just after being given its
    turn hands it on, so nobody behind it waits forever."""
    from llmnet.execute.engine import Engine

    async def scenario():
        engine = Engine(net(VOTE))
        order: list[str] = []

        async def query(name: str, hold: float) -> None:  # the steps Engine.samples takes around its work
            waiting = engine._key_turns.get("k")
            if waiting is None:
                engine._key_turns["k"] = []
            else:
                await engine._turn("k", waiting)
            try:
                order.append(name)
                await asyncio.sleep(hold)
            finally:
                engine._next_turn("k")

        engine._key_turns["k"] = []  # a query already on the prompt holds the turn
        waiting = {n: asyncio.ensure_future(query(n, 0.01)) for n in "bcde"}
        await asyncio.sleep(0.01)
        waiting["b"].cancel()  # cancelled while waiting
        await asyncio.sleep(0.01)
        engine._next_turn("k")  # the holder is done: the turn goes to "c" ...
        waiting["c"].cancel()  # ... cancelled before it could run: it must hand the turn on
        for name in "de":
            await asyncio.wait_for(waiting[name], 2)
        assert order == ["d", "e"] and "k" not in engine._key_turns
        assert waiting["b"].cancelled() and waiting["c"].cancelled()

    asyncio.run(scenario())
