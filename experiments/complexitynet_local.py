"""ComplexityNet (Bae et al., arXiv 2312.11511) with real local models on graded arithmetic.

    python experiments/complexitynet_local.py [--out DIR] [--n N] [--ship]

1. label: every tier of graphs/tiers_local.yaml (one SmolLM2 sample; vote of three
   SmolLM2 samples; those three plus greedy SmolLM2 and greedy Gemma-3-270M) runs 5
   times on each of N sums (``arithmetic:digits=1-2``), through the executor and its
   cache; label = the cheapest tier with >= 4 of 5 successes, unsolved tasks labelled
   with the cheapest tier that does best (``--unsolved best``);
2. split train / validation / test (50 / 20 / 30, stratified by label); train the TF-IDF +
   calibrated logistic-regression router, C and the cost-aware target chosen on validation;
3. evaluate on test: label accuracy against the paper's untuned baseline (SmolLM2 asked
   the paper's 1-5 question, 5 samples averaged), accuracy and cost against
   always-cheapest, always-top, random routing at equal cost and the oracle, from the
   labelling runs; then run the real gated network on the test tasks (its calls are
   cache hits of trial 0) as a check;
4. print the paper's three headline numbers for this setting and the issue's targets.

Cost is model calls per task (local models cost nothing in dollars). Budget: about 17
calls per task while labelling (15 SmolLM2 samples shared by the sampled tiers, 2 greedy
calls) plus 5 per test task for the baseline: N=100 is about 2,000 calls, some 8 minutes
on two shared CPU cores. ``--ship`` copies the router to graphs/routers/arithmetic_router.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmnet.complexity import evaluate_router, held_out, label_tasks, llm_scores, load_tiers, train_router  # noqa: E402
from llmnet.execute import RunConfig, SampleCache, run_network  # noqa: E402
from llmnet.tasks.datasets import load_dataset  # noqa: E402

SHIPPED = ROOT / "graphs" / "routers" / "arithmetic_router.json"


def fresh_samples(cache: Path) -> int:
    if not cache.exists():
        return 0
    c = SampleCache(cache)
    try:
        return len(c)
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "complexitynet_local")
    ap.add_argument("--n", type=int, default=100, help="tasks to label")
    ap.add_argument("--data", default="arithmetic:digits=1-2", help="dataset (n is added)")
    ap.add_argument("--tiers", type=Path, default=ROOT / "graphs" / "tiers_local.yaml")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--threshold", type=int, default=4)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    ap.add_argument("--ship", action="store_true", help=f"also write the router to {SHIPPED.relative_to(ROOT)}")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.trials, args.threshold = 12, 2, 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache.sqlite"
    started, before = time.perf_counter(), fresh_samples(cache)

    tiers = load_tiers(args.tiers)
    queries = load_dataset(f"{args.data},n={args.n}" if ":" in args.data else f"{args.data}:n={args.n}")

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  labelled {done}/{total}  ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"labelling {len(queries)} tasks of {args.data} with tiers {tiers.names}, {args.trials} trials each")
    labels = label_tasks(tiers, queries, args.trials, "threshold", args.threshold, "best", cache, concurrency=1,
                         progress=progress)
    labels.write_jsonl(out / "labels.jsonl")
    print("\n".join(labels.summary_lines()))
    labelled_at = time.perf_counter()

    model = train_router(list(labels.records), fractions=(0.5, 0.2, 0.3), seed=0, tolerance=0.01)
    model.save(out / "router.json")
    if args.ship:
        model.save(SHIPPED)
    target = model.meta.get("target", 0.8)
    test = held_out(list(labels.records), model)
    print(f"trained on {model.meta['trained_on']} tasks (C={model.meta['C']:g}); cost-aware target chosen on "
          f"validation: {target:g}; {len(test)} test tasks")

    scores = llm_scores([(str(r["id"]), r["question"]) for r in test],
                        {"backend": "local", "model": "smollm2-135m", "n_threads": 1}, work="solving the task",
                        cache_path=cache)
    report = evaluate_router(test, model, target, scores)
    report.write(out / "eval")
    print("\n".join(report.summary_lines()))

    # the real gated network on the test tasks: trial 0 of every tier is in the cache
    gated = tiers.gated({"kind": "complexitynet", "path": str((out / "router.json").resolve()),
                         "rule": "cost_aware", "target": target})
    test_ids = {str(r["id"]) for r in test}
    real = run_network(gated, [q for q in queries if q.id in test_ids],
                       RunConfig(cache_path=cache, progress=False, concurrency=1)).summary
    calls_made = fresh_samples(cache) - before
    elapsed = time.perf_counter() - started

    p = report.policies
    top, cheap = p[f"always {tiers.names[-1]}"], p[f"always {tiers.names[0]}"]
    aware = p[f"router cost_aware@{target:g}"]
    rand = p[f"random @ equal cost (cost_aware@{target:g})"]
    la = {name: {k: None if v is None else v["value"] for k, v in acc.items()}
          for name, acc in report.label_accuracy.items()}
    majority = next(o for name, o in p.items() if name.startswith("majority tier"))
    targets = {
        "gated accuracy within 1 point of always-top": aware.accuracy >= top.accuracy - 0.01,
        "gated cost <= 50% of always-top": aware.cost <= 0.5 * top.cost,
        "router beats random at equal cost by >= 5 points": aware.accuracy - rand.accuracy >= 0.05,
    }
    captured = report.saving_captured(f"router cost_aware@{target:g}")
    summary = {
        "setting": {"data": args.data, "n": args.n, "tiers": tiers.names, "trials": args.trials,
                    "threshold": args.threshold, "unsolved": "best", "split": [0.5, 0.2, 0.3], "target": target,
                    "cost_unit": report.cost_unit},
        "labels": labels.distribution(),
        "headline": {"router_tier_accuracy": la["router"]["tier"], "llm_baseline_tier_accuracy":
                     la["llm baseline"]["tier"], "cost_reduction_vs_top": 1 - aware.cost / top.cost,
                     "end_accuracy": aware.accuracy, "always_top_accuracy": top.accuracy,
                     "always_cheapest_accuracy": cheap.accuracy, "majority_label_tier_accuracy":
                     la["majority label"]["tier"], "majority_tier_accuracy": majority.accuracy},
        "report": report.to_data(),
        "targets": targets, "oracle_saving_captured": captured,
        "oracle_minus_random_at_oracle_cost": p["oracle"].accuracy - p["random @ equal cost (oracle)"].accuracy,
        "real_gated_run": {k: real[k] for k in ("accuracy", "calls", "samples", "cache_hits", "branches")},
        "model_calls_made": calls_made, "seconds": {"labelling": labelled_at - started, "total": elapsed},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print("\n== headline (paper: 79% vs 34% router accuracy, ~90% cost cut, 86.7% end accuracy)")
    print(f"router tier accuracy: fine-tuned {la['router']['tier']:.1%} vs untuned SmolLM2 "
          f"{la['llm baseline']['tier']:.1%} (n={report.n_labelled}; always the majority label: "
          f"{la['majority label']['tier']:.1%})")
    print(f"cost reduction vs always-top: {1 - aware.cost / top.cost:.1%} ({aware.cost:.2f} vs {top.cost:.2f} "
          f"{report.cost_unit} per task)")
    print(f"majority tier: accuracy {majority.accuracy:.1%}; {aware.verdict}")
    print(f"end accuracy: {aware.accuracy:.1%} (always-top {top.accuracy:.1%}, always-cheapest {cheap.accuracy:.1%}, "
          f"oracle {p['oracle'].accuracy:.1%} at {p['oracle'].cost:.2f})")
    print("== targets")
    for name, ok in targets.items():
        print(f"[{'PASS' if ok else 'FAIL'}] {name}")
    ceiling = p["oracle"].accuracy - p["random @ equal cost (oracle)"].accuracy
    print(f"gated - random at equal cost: {aware.accuracy - rand.accuracy:+.1%} (the oracle beats random at its "
          f"cost by {ceiling:+.1%}); oracle saving captured: " + ("n/a" if captured is None else f"{captured:.1%}"))
    print(f"real gated run on the test tasks (trial-0 draws): accuracy {real['accuracy']:.1%}, "
          f"{real['calls']} new calls, branches {real['branches']}")
    print(f"{calls_made} model calls made in {elapsed:.0f} s; wrote {out}/labels.jsonl, router.json, eval/, "
          f"summary.json")


if __name__ == "__main__":
    main()
