"""The local backend on the bundled SmolLM2: the same samples at any concurrency, a prompt's samples together."""

import asyncio
import os

import numpy as np
import pytest

from llmnet import load_network, loads_network
from llmnet.backends.base import Request
from llmnet.execute import RunConfig, run_network
from llmnet.tasks.datasets import arithmetic
from tests.conftest import GRAPHS, needs_local


@needs_local
def test_samples_do_not_depend_on_concurrency_or_order():
    # llama.cpp's prefix reuse used to make a sample depend on the call before it: at temperature 1
    # a run at concurrency 16 drew some different samples from a sequential one
    text = (GRAPHS / "vote.yaml").read_text().replace("temperature: 0.7", "temperature: 1.0")
    net = loads_network(text, {"K": 4})
    queries = arithmetic(4, digits=(2, 2), seed=3)
    runs = [run_network(net, list(qs), RunConfig(progress=False, concurrency=c))
            for c, qs in ((1, queries), (16, queries), (16, queries[::-1]))]
    texts = [{r["id"]: r["trace"]["gen"]["answers"] for r in run.results} for run in runs]
    assert texts[0] == texts[1] == texts[2]


@needs_local
def test_openmp_waits_passively_unless_the_user_chose():
    from llmnet.backends.local import _Loaded, model_path

    model_path("smollm2-135m")  # the model packages may load llama.cpp: the policy is set before they do
    assert os.environ.get("OMP_WAIT_POLICY") or _Loaded._registry  # set (passive), or llama.cpp loaded earlier


@needs_local
def test_a_prompts_samples_run_together():
    from llmnet.backends.local import LocalBackend

    net = load_network(GRAPHS / "vote.yaml")
    backend = LocalBackend("smol", net.spec.models["smol"])
    groups = []
    backend._run_group = lambda requests: groups.append([(r.prompt, r.seed) for r in requests]) or [
        [] for _ in requests]

    async def go():  # samples of two prompts arrive interleaved, as concurrent queries send them
        await asyncio.gather(*(backend.complete(Request(p, seed=s)) for s in range(3) for p in ("a", "b")))

    asyncio.run(go())
    assert groups == [[("a", 0), ("a", 1), ("a", 2)], [("b", 0), ("b", 1), ("b", 2)]]


def test_prompt_pieces_have_no_one_token_batch():
    from llmnet.backends.local import _pieces

    for start, end, limit in [(0, 1, 8), (0, 2, 8), (3, 40, 8), (0, 17, 8), (5, 22, 8), (0, 512, 512), (0, 1025, 512)]:
        pieces = _pieces(start, end, limit)
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(a == b_prev for (_, b_prev), (a, _) in zip(pieces, pieces[1:]))  # contiguous
        assert all(b - a <= limit for a, b in pieces)
        assert end - start == 1 or all(b - a >= 2 for a, b in pieces)
    assert _pieces(0, 17, 8) == [(0, 8), (8, 15), (15, 17)]


@needs_local
@pytest.mark.parametrize("batch_free", [None, False])
def test_a_sample_is_a_function_of_prompt_and_seed_whatever_came_before(batch_free):
    # every way reusing llama.cpp's state could leak the previous call into a sample: prompts sharing
    # prefixes of many lengths (a few-shot preamble, one token apart, prefixes of each other, one
    # token long), a prompt continuing the previous one with the very text just generated (its cache
    # holds those tokens, evaluated one at a time), and the second sample of a prompt against the
    # same seed drawn first. Each order must draw what a fresh llama.cpp state draws. None: the mode
    # the probe picks on this machine; False: the fixed blocks it falls back to.
    from llmnet.backends.local import LocalBackend

    backend = LocalBackend("smol", load_network(GRAPHS / "vote.yaml").spec.models["smol"])
    pre = "Question: 2 + 3\nAnswer: 5\nQuestion: 14 + 7\nAnswer: 21\nQuestion: "

    def draw(prompts, fresh=False, seed=11, n=2):
        out = {}
        for p in prompts:
            if fresh and backend._model is not None:
                backend._model.llm.reset()
            batches.clear()
            [res] = backend._run_group([Request(p, n=n, seed=seed, temperature=1.0, max_tokens=8)])
            out[p] = [s.text for s in res]
            llm = backend._model.llm
            logits[p] = llm._logits.copy()  # the prompt's canonical last-token logits
            if llm.batch_free and len(llm._prompt) > 1:  # a prompt token evaluated alone computes differently
                assert all(size > 1 for past, size in batches if past < len(llm._prompt)), (p, batches)
        return out

    logits, batches = {}, []
    draw(["Q"])  # loads the model (and runs the probe)
    llm = backend._model.llm
    probed = llm.batch_free
    llm.eval = lambda tokens: batches.append((llm.n_tokens, len(tokens))) or type(llm).eval(llm, tokens)
    try:
        if batch_free is not None:
            llm.batch_free = batch_free
        heads = [pre + "31 + 45\nAnswer:", "Once upon a time"]
        first = draw(heads, fresh=True)
        grown = [pre + end for end in ("3", "31", "31 +", "31 + 4", "31 + 45", "31 + 46")]  # 1-2 tokens apart
        prompts = heads + [h + first[h][1] for h in heads] + grown + [pre[:20], pre[:33], "Q"]
        fresh = draw(prompts, fresh=True)
        fresh_logits = dict(logits)
        assert len({tuple(v) for v in fresh.values()}) > len(prompts) // 2  # samples that could differ
        continued = [x for h in heads for x in (h, h + first[h][1])]  # the cache holds the continuation
        for order in (continued, sorted(prompts, key=len), prompts[::-1], prompts[1::2] + prompts[::2]):
            got = draw(order)
            assert got == {p: fresh[p] for p in got}, order
            assert all(np.array_equal(logits[p], fresh_logits[p]) for p in order), order  # bit for bit
        # the second sample of a group (from the saved logits) is the one a fresh state draws first
        assert {p: v[0] for p, v in draw(prompts[:4], fresh=True, seed=12, n=1).items()} == {
            p: fresh[p][1] for p in prompts[:4]}
    finally:
        del llm.eval
        llm.batch_free = probed
        llm.reset()


@needs_local
def test_an_evaluation_that_fails_midway_leaves_no_state_to_reuse():
    # llama.cpp failing after it overwrote part of the cache: the prompt cached before must not be
    # sampled from that cache as if it were intact
    from llmnet.backends.local import LocalBackend

    backend = LocalBackend("smol", load_network(GRAPHS / "vote.yaml").spec.models["smol"])
    pre = "Question: 2 + 3\nAnswer: 5\nQuestion: 14 + 7\nAnswer: 21\nQuestion: "
    a, b = pre + "31 + 45\nAnswer:", pre + "9 + 9 and a few more words than the other prompt has\nAnswer:"

    def draw(prompt):
        [res] = backend._run_group([Request(prompt, n=2, seed=5, temperature=1.0, max_tokens=12)])
        return [s.text for s in res]

    draw(b)
    llm = backend._model.llm
    llm.reset()
    want = draw(a)

    def failing(tokens):
        type(llm).eval(llm, tokens)
        raise RuntimeError("llama_decode returned -1")

    llm.eval = failing
    try:
        with pytest.raises(RuntimeError):
            llm.create_completion(b, max_tokens=2, seed=0)
    finally:
        del llm.eval
    assert draw(a) == want
