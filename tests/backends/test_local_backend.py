"""The local backend on the bundled SmolLM2: the same samples at any concurrency, a prompt's samples together."""

import asyncio
import os

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
