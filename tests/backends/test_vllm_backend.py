"""VllmBackend against an httpx2.MockTransport: n=K, structured_outputs, replicas, health."""

from __future__ import annotations

from collections import Counter

import httpx2
import pytest

from llmnet.backends import make_backend
from llmnet.backends.base import Request
from llmnet.backends.vllm import VllmBackend, rendezvous_order
from llmnet.errors import BackendUnavailable
from llmnet.network.spec import VllmModel
from tests.backends.conftest import completion_body, run

REPLICAS = ["http://r0:8000/v1", "http://r1:8000/v1", "http://r2:8000/v1"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Three replicas behind one MockTransport; a replica can be taken down and brought back."""

    def __init__(self, server, health_route: bool = True):
        self.down: set[str] = set()
        self.health_route = health_route
        self.hits: Counter[str] = Counter()
        server.reply = self.reply

    def reply(self, request: httpx2.Request, body: dict) -> httpx2.Response:
        host = request.url.host
        if host in self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        if request.method == "GET":
            if request.url.path == "/health":
                return httpx2.Response(200 if self.health_route else 404)
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        self.hits[host] += 1
        n = body.get("n", 1)
        return httpx2.Response(200, json=completion_body([f" {host}"] * n,
                                                         usage={"prompt_tokens": 5, "completion_tokens": n}))


async def _owner(backend: VllmBackend, prompt: str) -> str:
    out = await backend.complete(Request(prompt=prompt))
    return out.samples[0].text.strip()


# ----------------------------------------------------------------------------- requests


def test_one_request_with_n_and_seed(server, vllm_backend):
    backend = vllm_backend()
    assert backend.supports_n is True

    async def go():
        out = await backend.complete(Request(prompt="q", n=25, seed=40, stop=("\n",)))
        await backend.aclose()
        return out

    out = run(go())
    assert len(server.bodies) == 1
    body = server.bodies[0]
    assert body["n"] == 25 and body["seed"] == 40 and body["stop"] == ["\n"] and body["model"] == "m"
    assert len(out.samples) == 25
    assert [s.prompt_tokens for s in out.samples] == [12] + [0] * 24
    assert sum(s.completion_tokens for s in out.samples) == 50


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_choices_use_structured_outputs_never_guided(server, vllm_backend, api):
    backend = vllm_backend()
    server.reply = lambda req, body: httpx2.Response(200, json=completion_body(
        ["wrong"], chat=api == "chat", usage={"prompt_tokens": 3, "completion_tokens": 1}))

    async def go():
        out = await backend.complete(Request(prompt="judge", api=api, choices=("correct", "wrong")))
        await backend.aclose()
        return out

    out = run(go())
    body = server.bodies[0]
    assert body["structured_outputs"] == {"choice": ["correct", "wrong"]}
    assert not any(key.startswith("guided_") for key in body)
    assert "response_format" not in body
    assert [s.text for s in out.samples] == ["wrong"]


def test_no_constraint_without_choices(server, vllm_backend):
    backend = vllm_backend()
    run(backend.complete(Request(prompt="q")))
    assert "structured_outputs" not in server.bodies[0]


def test_identity_is_the_model_not_the_replica(server):
    one = VllmBackend("a", VllmModel(backend="vllm", model="m", base_url=REPLICAS), http_client=server.client())
    other = VllmBackend("b", VllmModel(backend="vllm", model="m", base_url=REPLICAS[::-1][:2]),
                        http_client=server.client())
    assert one.identity == other.identity == "vllm:m"
    assert isinstance(make_backend("x", VllmModel(backend="vllm", model="m", base_url=REPLICAS[0])), VllmBackend)


# ----------------------------------------------------------------------------- replicas


def test_rendezvous_moves_only_the_dead_replicas_keys():
    keys = [f"prompt {i}" for i in range(300)]
    before = {k: REPLICAS[rendezvous_order(k, REPLICAS)[0]] for k in keys}
    survivors = [REPLICAS[0], REPLICAS[2]]
    after = {k: survivors[rendezvous_order(k, survivors)[0]] for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == REPLICAS[1]}
    share = Counter(before.values())
    assert all(60 <= share[r] <= 140 for r in REPLICAS)  # about 100 each


def test_a_prompts_samples_stay_on_one_replica_and_load_spreads(server, vllm_backend):
    cluster = Cluster(server)
    backend = vllm_backend(base_url=REPLICAS)

    async def go():
        owners = {p: {await _owner(backend, p) for _ in range(4)} for p in (f"Question: {i} + 1" for i in range(60))}
        await backend.aclose()
        return owners

    owners = run(go())
    assert all(len(o) == 1 for o in owners.values())
    assert set(cluster.hits) == {"r0", "r1", "r2"} and min(cluster.hits.values()) >= 30


def test_failover_and_recovery(server, vllm_backend):
    cluster = Cluster(server)
    clock = Clock()
    backend = vllm_backend(clock=clock, base_url=REPLICAS, health_interval_s=10)
    prompts = [f"Question: {i} + 2" for i in range(40)]

    async def go():
        home = {p: await _owner(backend, p) for p in prompts}
        victim = "r1"
        mine = [p for p in prompts if home[p] == victim]
        assert mine
        cluster.down.add(victim)
        with pytest.raises(BackendUnavailable, match="cannot reach"):
            await backend.complete(Request(prompt=mine[0]))
        assert [r.healthy for r in backend.replicas] == [True, False, True]
        moved = {p: await _owner(backend, p) for p in prompts}  # the executor's retry lands here
        assert all(moved[p] != victim for p in prompts)
        assert all(moved[p] == home[p] for p in prompts if home[p] != victim)  # nobody else moves

        clock.now = 5  # not yet due: no probe, the replica stays out even though it is back
        cluster.down.clear()
        await _owner(backend, mine[0])
        assert backend._probe_task is None and not backend.replicas[1].healthy

        clock.now = 11  # due: the next call starts a background probe, which puts r1 back
        await _owner(backend, mine[0])
        await backend._probe_task
        assert all(r.healthy for r in backend.replicas)
        back = {p: await _owner(backend, p) for p in prompts}
        await backend.aclose()
        return home, back

    home, back = run(go())
    assert back == home


def test_probe_takes_a_silent_replica_out(server, vllm_backend):
    cluster = Cluster(server)
    backend = vllm_backend(base_url=REPLICAS)
    cluster.down.add("r2")
    assert run(backend.check_health()) == {"http://r0:8000/v1": True, "http://r1:8000/v1": True,
                                           "http://r2:8000/v1": False}


def test_health_falls_back_to_models_route(server, vllm_backend):
    cluster = Cluster(server, health_route=False)
    backend = vllm_backend(base_url=REPLICAS[:2])
    assert run(backend.check_health()) == {"http://r0:8000/v1": True, "http://r1:8000/v1": True}
    paths = [r.url.path for r in server.requests]
    assert paths.count("/health") == 2 and paths.count("/v1/models") == 2
    assert cluster.hits == Counter()


def test_unhealthy_health_route_means_dead(server, vllm_backend):
    server.reply = lambda req, body: httpx2.Response(503)
    backend = vllm_backend(base_url=REPLICAS[:1])
    assert run(backend.check_health()) == {"http://r0:8000/v1": False}


def test_all_replicas_dead_still_tries_the_prompts_first_choice(server, vllm_backend):
    cluster = Cluster(server)
    backend = vllm_backend(base_url=REPLICAS[:2])
    for replica in backend.replicas:
        replica.healthy = False
    assert run(_owner(backend, "q")) in {"r0", "r1"}
    assert backend.route(Request(prompt="q")).healthy
    assert sum(cluster.hits.values()) == 1


def test_aclose_cancels_a_running_probe(server, vllm_backend):
    clock = Clock()
    backend = vllm_backend(clock=clock, base_url=REPLICAS[:1], health_interval_s=1)

    async def go():
        clock.now = 2
        backend._maybe_probe()
        assert backend._probe_task is not None and not backend._probe_task.done()
        await backend.aclose()
        return backend._probe_task

    task = run(go())
    assert task.done()
