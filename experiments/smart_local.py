"""SMART on real local models: reference = the strongest local tier (SmolLM2 vote-9).

    python experiments/smart_local.py [--n 200] [--out experiments/out]

Candidates are cheaper subgraphs of graphs/smart_local.yaml (one sampled call; vote-3).
Cost is measured in tokens (local models cost no dollars). Faithful Clopper-Pearson and
the anytime variant run on the same items and the same cache, so the second pays only
for what the first did not already run. The realised agreement is audited by running
the reference on every item too (not counted in SMART's cost). Real SmolLM2-135M
outputs on generated 1-digit sums.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmnet import load_network
from llmnet.smart.experiment import run_smart, save_smart
from llmnet.tasks.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--accuracy", type=float, default=0.8)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    ap.add_argument("--cache", type=Path, default=ROOT / ".llmnet-cache" / "samples.sqlite")
    args = ap.parse_args()
    if args.smoke:
        args.n = 20
    net = load_network(ROOT / "graphs" / "smart_local.yaml")
    queries = load_dataset(f"arithmetic:n={args.n},digits=1-1,seed=5")
    summary = {"n_items": args.n, "target_agreement": args.accuracy, "runs": {}}
    for bound in ("clopper-pearson", "anytime"):
        for mix in (False, True):
            result, details = run_smart(net, queries, "strong", ["cheap", "mid"], delta=1 - args.accuracy,
                                        gamma=0.95, bound=bound, mix=mix, cache_path=args.cache)
            tag = f"{bound}{'-mix' if mix else ''}"
            save_smart(result, details, args.out / f"smart_local_{tag}")
            row = {"profiled": result.profiled, "plan": dict(result.plan.counts),
                   "decisions": {d.name: d.status.value for d in result.decisions},
                   "cost_tokens": result.total_cost, "reference_only_tokens": result.reference_cost,
                   "savings": result.savings, "realised_agreement": result.realised_agreement,
                   "target_met": result.target_met}
            summary["runs"][tag] = row
            print(f"{tag:24s} profiled {row['profiled']:4d}  plan {row['plan']}  savings x{row['savings']:.2f}  "
                  f"agreement {row['realised_agreement']:.3f} (target {args.accuracy})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smart_local.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'smart_local.json'}")


if __name__ == "__main__":
    main()
