"""VllmBackend against a double that behaves like ``vllm serve`` (tests/backends/vllm_server.py):
seeded child requests, prefix-cache usage, reasoning fields, served model name and fingerprint,
503 while draining; plus replicas, health and per-replica concurrency."""

from __future__ import annotations

from collections import Counter

import pytest

from llmnet import loads_network
from llmnet.backends import make_backend
from llmnet.backends.base import Request
from llmnet.backends.vllm import VllmBackend, rendezvous_order
from llmnet.errors import BackendUnavailable, SpecError
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cache import request_key
from llmnet.network.spec import VllmModel
from llmnet.tasks.query import Query
from tests.backends.conftest import run
from tests.backends.vllm_server import VllmLikeServer

REPLICAS = ["http://r0:8000/v1", "http://r1:8000/v1", "http://r2:8000/v1"]
PROMPT = "Question: what is 17 + 25? Think step by step, then give the number.\nAnswer:"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vllm() -> VllmLikeServer:
    return VllmLikeServer()


@pytest.fixture
def build(vllm):
    """``build(clock=..., **spec_fields)``: a VllmBackend on the vLLM-like double."""

    def make(clock=None, **fields) -> VllmBackend:
        spec = VllmModel(**{"backend": "vllm", "model": "m", "base_url": REPLICAS[0], **fields})
        return VllmBackend("m", spec, http_client=vllm.client(), **({"clock": clock} if clock else {}))

    return make


def complete(backend: VllmBackend, *requests: Request):
    async def go():
        try:
            return [await backend.complete(r) for r in requests]
        finally:
            await backend.aclose()

    return run(go())


def texts(completion) -> list[str]:
    return [s.text for s in completion.samples]


async def _owner(backend: VllmBackend, vllm: VllmLikeServer, prompt: str) -> str:
    await backend.complete(Request(prompt=prompt))
    return vllm.requests[-1].url.host


# ----------------------------------------------------------------------------- n = K, seeds


def test_n_k_is_k_children_seeded_seed_plus_i(vllm, build):
    """vLLM's child i has seed + i: any split of a seed range gives the same samples."""
    one, split_a, split_b, *singles = complete(
        build(), Request(prompt=PROMPT, n=5, seed=10), Request(prompt=PROMPT, n=2, seed=10),
        Request(prompt=PROMPT, n=3, seed=12), *(Request(prompt=PROMPT, seed=s) for s in range(10, 15)))
    assert vllm.bodies[0]["n"] == 5 and vllm.bodies[0]["seed"] == 10
    assert texts(one) == texts(split_a) + texts(split_b) == [texts(s)[0] for s in singles]
    assert len(set(texts(one))) > 1  # the children really differ


def test_cache_extends_k_with_the_samples_one_request_would_have_drawn(vllm, build, tmp_path):
    """K=3 then K=6 through the cache asks n=3 seed=3 and equals a fresh K=6 run."""
    def network(k: int):
        return loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: "{REPLICAS[0]}"}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes: {{gen: {{kind: generator, model: m, samples: {k}}}, vote: {{kind: vote, inputs: [gen]}}}}
""")

    queries = [Query(f"q{i}", f"{i} + {i}", str(2 * i)) for i in range(4)]
    cache = tmp_path / "c.sqlite"

    def go(k: int, cache_path):
        return run_network(network(k), queries, RunConfig(cache_path=cache_path, progress=False,
                                                          backends={"m": build()}))

    go(3, cache)
    before = len(vllm.bodies)
    extended = go(6, cache)
    assert [(b["n"], b["seed"]) for b in vllm.bodies[before:]] == [(3, 3)] * 4
    fresh = go(6, None)
    assert [r["trace"]["gen"]["answers"] for r in extended.results] == \
        [r["trace"]["gen"]["answers"] for r in fresh.results]


# ----------------------------------------------------------------------------- request fields


def test_chat_sends_max_completion_tokens_and_completion_max_tokens(vllm, build):
    complete(build(), Request(prompt="q", api="chat", max_tokens=7), Request(prompt="q", max_tokens=7))
    chat, plain = vllm.bodies
    assert chat["max_completion_tokens"] == 7 and "max_tokens" not in chat
    assert plain["max_tokens"] == 7 and "max_completion_tokens" not in plain


def test_sampling_fields_are_sent_and_in_the_cache_key(vllm, build):
    fields = dict(top_k=20, min_p=0.05, repetition_penalty=1.1, chat_template_kwargs={"enable_thinking": False},
                  extra_body={"presence_penalty": 0.5})
    backend = build(**fields)
    complete(backend, Request(prompt="q", api="chat"), Request(prompt="q"))
    chat, plain = vllm.bodies
    for body in (chat, plain):
        assert (body["top_k"], body["min_p"], body["repetition_penalty"], body["presence_penalty"]) == \
            (20, 0.05, 1.1, 0.5)
    assert chat["chat_template_kwargs"] == {"enable_thinking": False} and "chat_template_kwargs" not in plain
    plain_backend = build()
    request = Request(prompt="q")
    assert request_key(backend.identity, request) != request_key(plain_backend.identity, request)
    assert request_key(build(top_k=21).identity, request) != request_key(backend.identity, request)
    assert plain_backend.identity == "vllm:m"  # unchanged for specs without the new fields: old caches stay valid


def test_sampling_fields_change_the_samples(vllm, build):
    plain, topk = complete(build(), Request(prompt=PROMPT, n=4)), complete(build(top_k=5), Request(prompt=PROMPT, n=4))
    assert texts(plain[0]) != texts(topk[0])


def test_extra_body_may_not_override_llmnets_own_fields():
    with pytest.raises(ValueError, match="extra_body may not set n, seed"):
        VllmModel(backend="vllm", model="m", base_url=REPLICAS[0], extra_body={"seed": 1, "n": 2})
    with pytest.raises(SpecError, match="extra_body"):
        loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: "{REPLICAS[0]}", extra_body: {{temperature: 0}}}}}}
nodes: {{gen: {{kind: generator, model: m}}}}
""")


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_choices_use_structured_outputs_never_guided(vllm, build, api):
    out, = complete(build(top_k=3), Request(prompt="judge", api=api, choices=("correct", "wrong")))
    body = vllm.bodies[0]
    assert body["structured_outputs"] == {"choice": ["correct", "wrong"]} and body["top_k"] == 3
    assert not any(key.startswith("guided_") for key in body) and "response_format" not in body
    assert len(out.samples) == 1


# ----------------------------------------------------------------------------- what comes back


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_is_kept_beside_the_answer(vllm, build, field):
    vllm.reasoning_field = field
    answered, cut = complete(build(), Request(prompt=PROMPT, api="chat", n=2, seed=0, max_tokens=32),
                             Request(prompt=PROMPT, api="chat", n=2, seed=0, max_tokens=4))
    for a, c in zip(answered.samples, cut.samples):
        assert a.text.strip().isdigit() and a.reasoning == f"Let me think about{a.text}."
        assert c.text == "" and c.reasoning == a.reasoning  # cut off while thinking: the thinking survives


def test_fingerprint_served_model_and_prefix_cache_per_sample(vllm, build):
    vllm.served_model = "Qwen/Qwen3-0.6B"
    first, second = complete(build(), Request(prompt=PROMPT * 3, n=3), Request(prompt=PROMPT * 3, n=3, seed=3))
    for s in first.samples + second.samples:
        assert s.served_model == "Qwen/Qwen3-0.6B" and s.fingerprint == "vllm-0.11-r0"
    assert [s.cached_tokens for s in first.samples] == [0, 0, 0]  # a cold prefix cache
    prompt_tokens = second.samples[0].prompt_tokens
    assert second.samples[0].cached_tokens == (prompt_tokens // 16) * 16 > 0
    assert [s.cached_tokens for s in second.samples[1:]] == [0, 0]  # counted once, like the prompt


def test_a_run_reports_prefix_cache_hits_and_keeps_remarks_through_the_cache(vllm, build, tmp_path):
    vllm.reasoning_field = "reasoning"
    network = loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: "{REPLICAS[0]}"}}}}
task: {{prompt: "{PROMPT * 2!r}{{question}}"}}
nodes: {{gen: {{kind: generator, model: m, samples: 2, api: chat}}, vote: {{kind: vote, inputs: [gen]}}}}
""".replace("'", ""))
    queries = [Query("a", "1", "1"), Query("b", "1", "1")]  # the same prompt: b hits the prefix cache
    cache = tmp_path / "c.sqlite"
    paid = run_network(network, queries[:1], RunConfig(cache_path=cache, progress=False, backends={"m": build()}))
    again = run_network(network, queries[:1], RunConfig(cache_path=cache, progress=False, backends={"m": build()}))
    assert paid.summary["calls"] == 1 and again.summary["calls"] == 0
    remarks = paid.results[0]["trace"]["gen"]["server"]
    assert [r["served_model"] for r in remarks] == ["m", "m"] and all(r["reasoning"] for r in remarks)
    assert again.results[0]["trace"]["gen"]["server"] == remarks  # kept in the cache beside the text
    both = run_network(network, queries, RunConfig(progress=False, concurrency=1, backends={"m": build()}))
    assert both.summary["server_cached_tokens"] > 0
    assert both.summary["per_model"]["m"]["server_cached_tokens"] == both.summary["server_cached_tokens"]


# ----------------------------------------------------------------------------- replicas


def test_identity_is_the_model_not_the_replica(vllm):
    one = VllmBackend("a", VllmModel(backend="vllm", model="m", base_url=REPLICAS), http_client=vllm.client())
    other = VllmBackend("b", VllmModel(backend="vllm", model="m", base_url=REPLICAS[::-1][:2]),
                        http_client=vllm.client())
    assert one.identity == other.identity == "vllm:m"
    assert isinstance(make_backend("x", VllmModel(backend="vllm", model="m", base_url=REPLICAS[0])), VllmBackend)


def test_rendezvous_moves_only_the_dead_replicas_keys():
    keys = [f"prompt {i}" for i in range(300)]
    before = {k: REPLICAS[rendezvous_order(k, REPLICAS)[0]] for k in keys}
    survivors = [REPLICAS[0], REPLICAS[2]]
    after = {k: survivors[rendezvous_order(k, survivors)[0]] for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == REPLICAS[1]}
    share = Counter(before.values())
    assert all(60 <= share[r] <= 140 for r in REPLICAS)  # about 100 each


def test_a_prompts_samples_stay_on_one_replica_and_load_spreads(vllm, build):
    backend = build(base_url=REPLICAS)

    async def go():
        owners = {p: {await _owner(backend, vllm, p) for _ in range(4)} for p in (f"Question: {i} + 1" for i in range(60))}
        await backend.aclose()
        return owners

    owners = run(go())
    assert all(len(o) == 1 for o in owners.values())
    assert set(vllm.hits) == {"r0", "r1", "r2"} and min(vllm.hits.values()) >= 30


def test_failover_and_recovery(vllm, build):
    clock = Clock()
    backend = build(clock=clock, base_url=REPLICAS, health_interval_s=10)
    prompts = [f"Question: {i} + 2" for i in range(40)]

    async def go():
        home = {p: await _owner(backend, vllm, p) for p in prompts}
        victim = "r1"
        mine = [p for p in prompts if home[p] == victim]
        assert mine
        vllm.down.add(victim)
        with pytest.raises(BackendUnavailable, match="cannot reach"):
            await backend.complete(Request(prompt=mine[0]))
        assert [r.healthy for r in backend.replicas] == [True, False, True]
        moved = {p: await _owner(backend, vllm, p) for p in prompts}  # the executor's retry lands here
        assert all(moved[p] != victim for p in prompts)
        assert all(moved[p] == home[p] for p in prompts if home[p] != victim)  # nobody else moves

        clock.now = 5  # not yet due: no probe, the replica stays out even though it is back
        vllm.down.clear()
        await _owner(backend, vllm, mine[0])
        assert backend._probe_task is None and not backend.replicas[1].healthy

        clock.now = 11  # due: the next call starts a background probe, which puts r1 back
        await _owner(backend, vllm, mine[0])
        await backend._probe_task
        assert all(r.healthy for r in backend.replicas)
        back = {p: await _owner(backend, vllm, p) for p in prompts}
        await backend.aclose()
        return home, back

    home, back = run(go())
    assert back == home


def test_a_draining_replica_503_is_taken_out_and_the_run_completes(vllm, build):
    """vLLM answers 503 while it drains: the retry must go to another replica, not wait on this one."""
    network = loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: {REPLICAS}, limits: {{retries: 2, backoff: 0}}}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes: {{gen: {{kind: generator, model: m, samples: 3}}, vote: {{kind: vote, inputs: [gen]}}}}
""")
    queries = [Query(f"q{i}", f"{i} + 1", str(i + 1)) for i in range(30)]
    clean = run_network(network, queries, RunConfig(progress=False, backends={"m": build(base_url=REPLICAS)}))
    vllm.draining.add("r1")
    vllm.hits.clear()
    backend = build(base_url=REPLICAS)
    drained = run_network(network, queries, RunConfig(progress=False, concurrency=1, backends={"m": backend}))
    assert drained.summary["errors"] == 0
    assert [r["trace"]["gen"]["answers"] for r in drained.results] == \
        [r["trace"]["gen"]["answers"] for r in clean.results]  # same seeds, same weights: same samples
    assert vllm.hits["r1"] == 0 and drained.summary["retries"] == 1  # one 503, then r1 is out
    assert not backend.replicas[1].healthy
    assert run(build(base_url=REPLICAS).check_health())["http://r1:8000/v1"] is False  # /health says 503 too


def test_concurrency_per_replica_as_well_as_per_model(vllm, build):
    vllm.latency_s = 0.02
    network = loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: {REPLICAS[:2]}, replica_concurrency: 2,
              limits: {{concurrency: 3}}}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes: {{gen: {{kind: generator, model: m, samples: 2}}, vote: {{kind: vote, inputs: [gen]}}}}
""")
    queries = [Query(f"q{i}", f"{i} * 3", str(3 * i)) for i in range(40)]
    report = run_network(network, queries, RunConfig(progress=False, concurrency=40,
                                                     backends={"m": build(base_url=REPLICAS[:2],
                                                                          replica_concurrency=2,
                                                                          limits={"concurrency": 3})}))
    assert report.summary["errors"] == 0
    assert max(vllm.max_in_flight.values()) == 2  # never more than 2 on one replica
    assert report.summary["max_in_flight"]["m"] == 3  # and never more than 3 in all
    assert set(vllm.hits) == {"r0", "r1"}


def test_probe_takes_a_silent_replica_out(vllm, build):
    backend = build(base_url=REPLICAS)
    vllm.down.add("r2")
    assert run(backend.check_health()) == {"http://r0:8000/v1": True, "http://r1:8000/v1": True,
                                           "http://r2:8000/v1": False}


def test_health_falls_back_to_models_route(vllm, build):
    vllm.health_route = False
    backend = build(base_url=REPLICAS[:2])
    assert run(backend.check_health()) == {"http://r0:8000/v1": True, "http://r1:8000/v1": True}
    assert vllm.paths.count("/health") == 2 and vllm.paths.count("/v1/models") == 2
    assert vllm.hits == Counter()


def test_all_replicas_dead_still_tries_the_prompts_first_choice(vllm, build):
    backend = build(base_url=REPLICAS[:2])
    for replica in backend.replicas:
        replica.healthy = False
    assert run(_owner(backend, vllm, "q")) in {"r0", "r1"}
    assert backend.route(Request(prompt="q")).healthy
    assert sum(vllm.hits.values()) == 1


def test_aclose_cancels_a_running_probe(build):
    clock = Clock()
    backend = build(clock=clock, base_url=REPLICAS[:1], health_interval_s=1)

    async def go():
        clock.now = 2
        backend._maybe_probe()
        assert backend._probe_task is not None and not backend._probe_task.done()
        await backend.aclose()
        return backend._probe_task

    task = run(go())
    assert task.done()
