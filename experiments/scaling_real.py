"""Scaling laws on real LLM samples: the shared gpt-3.5 last-letters pools, every fit, per group.

    python experiments/scaling_real.py [--pools FILE] [--out experiments/out] [--smoke]

Real recorded samples (500 queries x 40 gpt-3.5-turbo answers, ../shared/data/pools), no
model calls. For two fitting budgets -- K <= 5, and K <= 100 (the authors' K set
{2, 5, 10, 20, 50, 100} for their per-query law) -- every law is fitted and predicts the
exact curve at K = 1..250; the mean absolute error of each fit on each group (overall,
easy, hard) is written beside the authors' released law's published figure on this set
(fit on K <= 5: 0.0022 overall, 0.0007 easy, 0.0139 hard), with each group's shape, K*
and recommended fit. Writes scaling_real.json and the scaling_real_* folders (JSON + PNG).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmnet.scaling.experiment import analyse_pools
from llmnet.scaling.pools import read_pools

ROOT = Path(__file__).resolve().parents[1]
POOLS = ROOT.parent / "shared" / "data" / "pools" / "last_letters_gpt35.jsonl"
AUTHORS_LAW_MAE_K5 = {"overall": 0.0022, "easy": 0.0007, "hard": 0.0139}  # their released code, fit on K <= 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=Path, default=POOLS)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out")
    ap.add_argument("--smoke", action="store_true", help="60 queries, K <= 30: seconds, what the test suite runs")
    args = ap.parse_args()
    pools = read_pools(args.pools)
    k_max = 250
    if args.smoke:
        pools, k_max = pools[:60], 30
    ks = list(range(1, k_max + 1))
    summary = {"pools": str(args.pools.name), "queries": len(pools), "ks": [1, k_max],
               "authors_law_mae_fit_k5_published": AUTHORS_LAW_MAE_K5, "budgets": {}}
    for label, fit_max_k in (("fit_k5", 5), ("fit_k100", 100)):
        data = analyse_pools(pools, ks, args.out / f"scaling_real_{label}", fit_max_k=fit_max_k)
        groups = {}
        for name, g in data["groups"].items():
            groups[name] = {"n_queries": g["n_queries"], "shape": g["shape"], "k_star": g["k_star"],
                            "recommended": g["recommended"], "fitted_shape": g["fitted_shape"],
                            "acc_k1": g["acc"][0], "acc_kmax": g["acc"][-1],
                            "mae": {f: v["mae_all"] for f, v in g["fits"].items()},
                            "loko_mae": {f: v["loko_mae"] for f, v in g["fits"].items()}}
            rec = g["recommended"]
            target = AUTHORS_LAW_MAE_K5.get(name)
            if rec is not None and target is not None and fit_max_k == 5:
                groups[name]["recommended_within_published_target"] = groups[name]["mae"][rec] <= target
        summary["budgets"][label] = {"fit_max_k": fit_max_k, "groups": groups}
        for name, g in groups.items():
            print(f"[{label}] {name:8s} {g['n_queries']:4d} q, {g['shape']:10s} K* {g['k_star']['value']} "
                  f"[{g['k_star']['lo']}, {g['k_star']['hi']}] recommended {g['recommended']}; MAE "
                  + ", ".join(f"{f} {v:.4f}" for f, v in g["mae"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling_real.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'scaling_real.json'} and the scaling_real_* folders (JSON + PNG)")


if __name__ == "__main__":
    main()
