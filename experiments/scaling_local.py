"""Scaling on real bundled models: SmolLM2-135M and Gemma-3-270M, Vote, fits on K <= 5.

    python experiments/scaling_local.py [--n 40] [--pool 30] [--out experiments/out] [--smoke]

Real model outputs through the executor and the per-sample cache (a re-run is free),
no simulation. Two tasks per model:

* ``arithmetic``: 1-2 digit sums, few-shot, number answers;
* ``choice``: the same kind of sums as multiple choice, one option the tempting
  no-carry error (17 + 25 -> 32), where a plurality of small-model samples can settle
  on the distractor: the paper's non-monotone effect (an inverse-U) needs such items.

For each (model, task): the exact Vote curve at K <= M, its shape and K* (paired
bootstrap over queries), every law fitted on K <= 5 with its MAE against the exact curve
per group, and the recommended fit. Whatever shape comes out is reported as measured.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from llmnet import loads_network
from llmnet.scaling.experiment import run_scaling
from llmnet.tasks.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("smollm2-135m", "gemma3-270m")

ARITHMETIC = """
name: arith
models: {m: {backend: local, model: %s}}
task:
  prompt: "Question: 2 + 3\\nAnswer: 5\\nQuestion: 14 + 7\\nAnswer: 21\\nQuestion: {question}\\nAnswer:"
  answer: {kind: number}
nodes:
  gen: {kind: generator, model: m, samples: "${K}", temperature: 0.7, max_tokens: 8, stop: ["\\n"]}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""

CHOICE = """
name: choice
models: {m: {backend: local, model: %s}}
task:
  prompt: "Question: What is 2 + 3?\\n(A) 6\\n(B) 5\\n(C) 23\\nAnswer: (B)\\nQuestion: What is {question}?\\n{choices}\\nAnswer: ("
  answer: {kind: choice, choices: [A, B, C]}
nodes:
  gen: {kind: generator, model: m, samples: "${K}", temperature: 0.7, max_tokens: 3, stop: ["\\n"]}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""


def choice_dataset(n: int, path: Path, seed: int = 5) -> Path:
    """Sums with a carry, as 3-way multiple choice: the truth, the no-carry error and an off-by-ten."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        a, b = rng.randint(11, 89), rng.randint(11, 89)
        if (a % 10) + (b % 10) < 10 or a + b > 99:
            continue
        truth, tempt, other = a + b, a + b - 10, a + b + 10
        options = [truth, tempt, other]
        rng.shuffle(options)
        rows.append({"id": f"mc{len(rows)}", "question": f"{a} + {b}", "choices": [str(o) for o in options],
                     "answer": "ABC"[options.index(truth)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="queries per task")
    ap.add_argument("--pool", type=int, default=30, help="samples per query (K up to this)")
    ap.add_argument("--fit-max-k", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs")
    ap.add_argument("--cache", type=Path, default=ROOT / ".llmnet-cache" / "samples.sqlite")
    args = ap.parse_args()
    models = args.models.split(",")
    if args.smoke:
        args.n, args.pool, models = 3, 6, models[:1]
    ks = list(range(1, args.pool + 1))
    tasks = {"arithmetic": (ARITHMETIC, load_dataset(f"arithmetic:n={args.n},digits=1-2,seed=11")),
             "choice": (CHOICE, load_dataset(str(choice_dataset(args.n, args.out / "scaling_local_choice.jsonl"))))}
    summary = {"queries": args.n, "pool": args.pool, "fit_max_k": args.fit_max_k, "method": "vote", "runs": {}}
    for model in models:
        for task, (text, queries) in tasks.items():
            net = loads_network(text % model, {"K": args.pool})
            data = run_scaling(net, queries, ks, args.pool, args.out / f"scaling_local_{model}_{task}", args.cache,
                               fit_max_k=args.fit_max_k, buckets="easy_hard")
            groups = {name: {"n_queries": g["n_queries"], "shape": g["shape"], "k_star": g["k_star"],
                             "recommended": g["recommended"], "fitted_shape": g["fitted_shape"],
                             "acc_k1": g["acc"][0], "acc_kmax": g["acc"][-1],
                             "mae": {f: v["mae_all"] for f, v in g["fits"].items()}}
                      for name, g in data["groups"].items()}
            summary["runs"][f"{model}/{task}"] = {"groups": groups, "calls": data["calls"],
                                                  "cache_hits": data["cache_hits"]}
            for name, g in groups.items():
                print(f"{model:13s} {task:10s} {name:8s} {g['n_queries']:3d} q: {g['shape']:10s} "
                      f"K=1 {g['acc_k1']:.3f} -> K={ks[-1]} {g['acc_kmax']:.3f}, K* {g['k_star']['value']} "
                      f"[{g['k_star']['lo']}, {g['k_star']['hi']}]; recommended {g['recommended']}; MAE "
                      + ", ".join(f"{f} {v:.3f}" for f, v in g["mae"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling_local.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'scaling_local.json'} and the scaling_local_* folders (JSON + PNG)")


if __name__ == "__main__":
    main()
