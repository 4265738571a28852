"""Scaling on a real model: SmolLM2-135M on graded arithmetic, Vote and Filter-Vote.

    python experiments/scaling_local.py [--n 60] [--pool 50] [--out experiments/out]

Draws a pool of M samples per query (through the executor and the per-sample cache,
so a re-run is free), computes the exact vote accuracy at every K <= M per difficulty
bucket, fits the three laws on K <= 5 only and reports how well each predicts K <= M
(mean absolute error against the exact curve). Real model outputs, not simulations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from llmnet import load_network
from llmnet.scaling.experiment import run_scaling
from llmnet.tasks.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def mae_table(data: dict) -> dict:
    """Per group and fit: MAE of the fitted curve against the exact accuracy over all K."""
    out = {}
    for name, group in data["groups"].items():
        exact = np.asarray(group["acc"])
        out[name] = {fit: float(np.mean(np.abs(np.asarray(curve["predicted"]["mean"]) - exact)))
                     for fit, curve in group["fits"].items()}
        out[name]["queries"] = group["n_queries"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="queries")
    ap.add_argument("--pool", type=int, default=50, help="samples per query (K up to this)")
    ap.add_argument("--fit-max-k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    ap.add_argument("--cache", type=Path, default=ROOT / ".llmnet-cache" / "samples.sqlite")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.pool = 4, 6
    queries = load_dataset(f"arithmetic:n={args.n},digits=1-2,seed=11")
    ks = list(range(1, args.pool + 1))
    summary = {"model": "SmolLM2-135M-Instruct (Q4_1, llama.cpp)", "queries": args.n, "pool": args.pool,
               "fit_max_k": args.fit_max_k, "target": "fit on K <= 5 predicts K <= 50 within 0.03 MAE",
               "methods": {}}
    for method, graph, params in (("vote", "vote.yaml", {}), ("filter_vote", "filter_vote.yaml", {})):
        net = load_network(ROOT / "graphs" / graph, params)
        data = run_scaling(net, queries, ks, args.pool, args.out / f"scaling_local_{method}", args.cache,
                           fit_max_k=args.fit_max_k, buckets="easy_hard")
        maes = mae_table(data)
        overall = data["groups"]["overall"]["acc"]
        summary["methods"][method] = {"mae": maes, "acc_k1": overall[0], "acc_kmax": overall[-1],
                                      "calls": data["calls"], "cache_hits": data["cache_hits"]}
        best = min((v, k) for k, v in maes["overall"].items() if k != "queries")
        print(f"{method:12s} accuracy K=1 {overall[0]:.3f} -> K={ks[-1]} {overall[-1]:.3f}; "
              f"fit on K<={args.fit_max_k}, MAE over K<={ks[-1]}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in maes["overall"].items() if k != "queries")
              + f"  -> best {best[1]} {'PASS' if best[0] <= 0.03 else 'MISS'} (target 0.03)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling_local.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'scaling_local.json'} and the scaling_local_* folders (JSON + PNG)")


if __name__ == "__main__":
    main()
