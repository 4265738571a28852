"""Local-model benchmark: llmnet's llama.cpp backend against a direct llama.cpp loop.

    python experiments/bench_local.py --json experiments/out/bench_local.json [--smoke]

Real SmolLM2-135M (the ``local`` extra), Vote-K on generated arithmetic. Contenders, with
interleaved repetitions in one process (medians):

- ``direct``: a plain ``llama_cpp.Llama`` loop, the K samples of each prompt one after
  another with seeds 0..K-1 (llama.cpp reuses the prompt prefix between calls);
- ``llmnet_default``: ``run_network`` at the default concurrency (64 queries in flight);
- ``llmnet_sequential``: the same at concurrency 1.

Also: whether llmnet's samples are identical at every concurrency and from run to run
(they should be: each call starts from the prompt's canonical llama.cpp state), whether
OMP_WAIT_POLICY was set to passive by the backend, whether the load-time probe found the
model batch-free (one evaluation per new prompt; else fixed blocks), and per prompt, for
each contender, the llama.cpp evaluation calls and tokens evaluated (prompt and generated
tokens; counted by a wrapper around ``Llama.eval`` on both contenders alike).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("experiments/out/bench_local.json"))
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="2 queries, K=2, one repetition: what the test suite runs")
    args = ap.parse_args()
    n, k, reps = (2, 2, 1) if args.smoke else (args.queries, args.k, args.reps)
    user_omp = os.environ.get("OMP_WAIT_POLICY")
    if importlib.util.find_spec("llama_cpp") is None:  # not imported here: the backend loads it (and sets OMP)
        result = {"skipped": "llama-cpp-python is not installed (pip install 'llmnet-compound[local]')"}
        print(result["skipped"])
        _write(args.json, result)
        return
    from llmnet import load_network
    from llmnet.backends.local import LocalBackend, _Loaded
    from llmnet.execute import RunConfig, run_network
    from llmnet.network.templates import render
    from llmnet.tasks.datasets import arithmetic

    net = load_network(ROOT / "graphs" / "vote.yaml", {"K": k})
    queries = arithmetic(n, digits=(1, 2), seed=0)
    spec, gen = net.spec.models["smol"], net.spec.nodes["gen"]
    backend = LocalBackend("smol", spec)
    backend._model = _Loaded.get(backend._path, spec.n_ctx, spec.n_threads)  # loads llama.cpp (and sets OMP)
    omp = os.environ.get("OMP_WAIT_POLICY")
    from llama_cpp import Llama

    plain = Llama(model_path=str(backend._path), n_ctx=spec.n_ctx, verbose=False, seed=0,
                  n_threads=spec.n_threads or min(4, os.cpu_count() or 1))
    prompts = [render(net.spec.task.prompt, q.template_values()) for q in queries]
    evals = {"direct": [0, 0], "llmnet": [0, 0]}  # llama.cpp evaluation calls, tokens evaluated

    def counted(llm, tally):
        def eval_(tokens):
            if len(tokens):  # llama-cpp-python calls eval([]) when the prompt is all cached: no work
                tally[0] += 1
                tally[1] += len(tokens)
            return type(llm).eval(llm, tokens)
        llm.eval = eval_

    counted(plain, evals["direct"])
    counted(backend._model.llm, evals["llmnet"])

    def direct():
        out = []
        for p in prompts:
            out.append([plain.create_completion(prompt=p, max_tokens=gen.max_tokens, temperature=gen.temperature,
                                                top_p=gen.top_p, stop=list(gen.stop), seed=gen.seed + i)
                        ["choices"][0]["text"] for i in range(k)])
        return out

    def llmnet(concurrency):
        def go():
            rep = run_network(net, queries, RunConfig(progress=False, concurrency=concurrency,
                                                      backends={"smol": backend}))
            assert rep.summary["errors"] == 0, rep.summary
            return [r["trace"]["gen"]["answers"] for r in rep.results]
        return go

    contenders = {"direct": direct, "llmnet_default": llmnet(RunConfig().concurrency), "llmnet_sequential": llmnet(1)}
    wall: dict[str, list[float]] = {c: [] for c in contenders}
    cpu: dict[str, list[float]] = {c: [] for c in contenders}
    answers: dict[str, list] = {c: [] for c in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            w0, c0 = time.perf_counter(), time.process_time()
            answers[name].append(fn())
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    med = {c: statistics.median(v) for c, v in wall.items()}
    med_cpu = {c: statistics.median(v) for c, v in cpu.items()}
    flat = lambda runs: [a for query in runs for a in query]  # noqa: E731
    base = flat(answers["llmnet_sequential"][0])
    same = {f"{name}[{i}]": sum(a == b for a, b in zip(flat(run), base)) / len(base)
            for name in ("llmnet_default", "llmnet_sequential") for i, run in enumerate(answers[name])}
    result = {
        "model": spec.model, "queries": n, "k": k, "calls": n * k, "reps": reps,
        "default_concurrency": RunConfig().concurrency,
        "wall_s": med, "cpu_s": med_cpu, "wall_runs": wall, "cpu_runs": cpu,
        "default_vs_direct": med["llmnet_default"] / med["direct"],
        "sequential_vs_direct": med["llmnet_sequential"] / med["direct"],
        "default_vs_direct_cpu": med_cpu["llmnet_default"] / med_cpu["direct"],
        "identical_to_sequential": same,
        "all_identical": all(v == 1.0 for v in same.values()),
        "omp_wait_policy": omp, "omp_set_by_user": user_omp is not None,
        "batch_free": backend._model.llm.batch_free,
        "evals_per_prompt": {"direct": evals["direct"][0] / (n * reps),
                             "llmnet": evals["llmnet"][0] / (2 * n * reps)},  # two llmnet contenders
        "tokens_evaluated_per_prompt": {"direct": evals["direct"][1] / (n * reps),
                                        "llmnet": evals["llmnet"][1] / (2 * n * reps)},
        "target": "default concurrency <= 1.1x the direct loop; identical samples at every concurrency",
    }
    print(f"local {spec.model}, {n} queries x K={k}: llmnet (concurrency {RunConfig().concurrency}) "
          f"{result['default_vs_direct']:.3f}x the direct loop (CPU {result['default_vs_direct_cpu']:.3f}x), "
          f"sequential {result['sequential_vs_direct']:.3f}x; samples identical at every concurrency: "
          f"{result['all_identical']}; OMP_WAIT_POLICY={omp}; batch-free: {result['batch_free']}; llama.cpp "
          f"evaluations per prompt: direct {result['evals_per_prompt']['direct']:.1f}, llmnet "
          f"{result['evals_per_prompt']['llmnet']:.1f}")
    _write(args.json, result)


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
