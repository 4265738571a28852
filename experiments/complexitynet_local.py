"""ComplexityNet (Bae et al., arXiv 2312.11511) on a real local tier ladder whose tiers differ.

    python experiments/complexitynet_local.py [--out DIR] [--cache FILE] [--n N] [--smoke]

Tasks: generated sums whose difficulty shows in the text (``arithmetic:digits=1-2,ops=1``:
one or two digits per number, balanced). Tiers (``graphs/tiers_ladder.yaml``): SmolLM2-135M
at temperature 1.2, one sample / a plurality vote of three / of five, costs measured in
model calls. The pilots behind that choice (same prompt, 5 trials per tier):

* temperature 0.8 on ``digits=1-2,ops=1-2`` (24 tasks): single 0.20, vote3 0.26, vote5 0.275;
  every two-operation sum was ~0 for every tier, and gaps of 2-6 points cannot be resolved
  by a few hundred tasks;
* temperature 1.2 on ``digits=1-2,ops=1`` (16 tasks): single 0.06, vote3 0.20, vote5 0.30
  (one-digit sums 0.08 / 0.30 / 0.43): gaps of 10-14 points, the chosen setting;
* Gemma-3-270M (base) with this few-shot completion prompt: greedy 0/36 on ``digits=1-3,
  ops=1-2`` and 1/10 on one-digit sums where SmolLM2 greedy got 7/10, so it is no rung
  above SmolLM2 on sums and is not a tier.

1. label: every tier runs 5 trials per task through the executor and its cache (the tiers
   share samples: 25 SmolLM2 calls per task; reruns are free); the pass counts give two
   label sets from the same runs: ``threshold`` (the cheapest tier with >= 4 of 5
   successes; unsolved tasks go to the cheapest tier that does best) and the paper's
   5-class rule (``paper_class``: classes {1,2} -> single, {3,4} -> vote3, 5 -> vote5;
   tasks no tier ever solves are class 1);
2. tier separation: each tier's accuracy (expected over trials) with a 95% bootstrap
   interval over tasks, and the paired gap between adjacent tiers with its interval;
3. for each label set x features (TF-IDF, SmolLM2 embeddings via llama.cpp, both): 5-fold
   cross-validation (``cross_validate``; each fold's router never saw its tasks), every
   policy beside the most-common-tier baseline, random routing at equal cost and the
   oracle, with intervals and verdicts; the per-tier success router's realised success
   beside each target, and the budget rule (argmax_t p_t(x) - lambda c_t, beyond the paper)
   at the mean cost the success rule spends at each target (``budget`` in summary.json);
4. the paper's untuned baseline (SmolLM2 asked the authors' 1-5 question, 5 samples
   averaged) on the first ``--llm-n`` tasks: tier-label accuracy beside the majority label.

Writes DIR/summary.json (headline, every variant), DIR/labels.jsonl and DIR/labels_paper.jsonl
(the two label sets: ``llmnet complexity eval DIR/labels.jsonl --folds 5 --features F``
reproduces a variant's router rows), DIR/curve.png (the
headline variant's cost-accuracy plot) and DIR/tiers.png (tier accuracies with intervals).
Budget at the default N=250: 6,250 SmolLM2 calls for labelling plus 5 x ``--llm-n`` for the
baseline, about 20-30 minutes on two shared CPU cores the first time; seconds from the cache.
``--smoke`` runs the same code on a simulated ladder (tiny, seconds; its numbers are about
nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmnet.complexity import assign_label, cross_validate, label_tasks, llm_scores, load_tiers  # noqa: E402
from llmnet.complexity.classifier import score_to_tier  # noqa: E402
from llmnet.complexity.label import PAPER_TIER  # noqa: E402
from llmnet.complexity.report import bootstrap_indices, interval, success  # noqa: E402
from llmnet.execute import SampleCache  # noqa: E402
from llmnet.network.graph import loads_network  # noqa: E402
from llmnet.complexity.tiers import tiers_from_network  # noqa: E402
from llmnet.tasks.datasets import load_dataset  # noqa: E402

TIERS = ROOT / "graphs" / "tiers_ladder.yaml"
FEATURES = ("tfidf", "embedding", "both")
HEADLINE = ("threshold", "tfidf")  # fixed before the run: the variant the README line quotes
SUCCESS_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5)
"""Targets of the per-tier success router: this ladder's best tier solves ~30%, so 0.5-0.9 route everything top."""


def fresh_samples(cache: Path) -> int:
    if not cache.exists():
        return 0
    c = SampleCache(cache)
    try:
        return len(c)
    finally:
        c.close()


def smoke_tiers():
    """The ladder's structure on the simulated backend (for --smoke only: numbers about nothing)."""
    text = TIERS.read_text(encoding="utf-8").replace(
        "smol: {backend: local, model: smollm2-135m, n_threads: 1}",
        "smol: {backend: simulated, model: sim, skill: 0.8}")
    return tiers_from_network(loads_network(text))


def relabel(records: list[dict], rule: str, threshold: int) -> list[dict]:
    """The same pass counts labelled by ``rule`` (``threshold`` or the paper's), unsolved -> cheapest best."""
    names = list(records[0]["counts"])
    out = []
    for r in records:
        cls, tier, unsolved = assign_label(list(r["counts"].values()), rule, threshold, "best")
        out.append({**r, "class": cls, "label": names[tier], "unsolved": unsolved,
                    "rule": "paper" if rule == "paper" else f"threshold:{threshold}"})
    return out


def ci(values: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    lo, hi = interval(values, idx)
    return {"value": float(np.mean(values)), "low": lo, "high": hi}


def tier_separation(records: list[dict]) -> dict:
    """Each tier's accuracy with its interval, adjacent paired gaps with theirs, and whether they separate."""
    names = list(records[0]["counts"])
    s = success(records)
    idx = bootstrap_indices(len(records))
    tiers = {t: ci(s[:, j], idx) for j, t in enumerate(names)}
    gaps = {}
    for j in range(len(names) - 1):
        gap = ci(s[:, j + 1] - s[:, j], idx)
        widths = [tiers[names[k]]["high"] - tiers[names[k]]["low"] for k in (j, j + 1)]
        gap["interval_excludes_0"] = gap["low"] > 0 or gap["high"] < 0
        gap["wider_than_both_tier_intervals"] = abs(gap["value"]) > max(widths)
        gaps[f"{names[j + 1]} - {names[j]}"] = gap
    return {"tiers": tiers, "gaps": gaps}


def variant_summary(report) -> dict:
    """The numbers a reader needs from one cross-validated report."""
    p = report.policies
    majority = next(n for n in p if n.startswith("majority tier"))
    top = f"always {report.tiers[-1]}"

    def row(name: str) -> dict:
        o = p[name]
        return {"accuracy": o.accuracy, "accuracy_ci": list(o.accuracy_ci), "cost": o.cost,
                "cost_ci": list(o.cost_ci), "verdict": o.verdict}

    out = {"majority": {"name": majority, **row(majority)}, "oracle": row("oracle"),
           "always_top": row(top), "always_cheapest": row(f"always {report.tiers[0]}"),
           "router_predicted": row("router predicted"),
           "random_at_predicted_cost": row("random @ equal cost (predicted)"),
           "router_cost_aware": row("router cost_aware (target from validation)"),
           "label_accuracy": {k: {kk: vv for kk, vv in v.items()} for k, v in report.label_accuracy.items()},
           "success": [{"target": t, **row(name), "random_at_equal_cost": row(
               f"random @ equal cost ({name.removeprefix('router ')})")}
               for name, t in report.success_targets.items()],
           # the budget rule (beyond the paper) at the mean cost success@t spends on each fold's training tasks
           "budget": [{"budget_of": f"success@{t:g}", **row(f"router budget=success@{t:g}"),
                       "random_at_equal_cost": row(f"random @ equal cost (budget=success@{t:g})")}
                      for t in report.success_targets.values() if f"router budget=success@{t:g}" in p]}
    return out


def llm_baseline(records_by_rule: dict[str, list[dict]], n: int, cache: Path | None, backends=None) -> dict:
    """The untuned LLM's tier-label accuracy (and exact 1-5 class accuracy under the paper's rule)."""
    head = records_by_rule["threshold"][:n]
    scores = llm_scores([(str(r["id"]), r["question"]) for r in head],
                        {"backend": "local", "model": "smollm2-135m", "n_threads": 1} if backends is None
                        else {"backend": "simulated", "model": "sim"},
                        work="solving the task", cache_path=cache)
    names = list(head[0]["counts"])
    tiers = np.array([score_to_tier(x, len(names)) for x in scores])
    idx = bootstrap_indices(len(head))
    out: dict = {"n": len(head), "parsed": sum(x is not None for x in scores),
                 "prompt": "the authors' 1-5 prompt, work = 'solving the task', 5 samples at T=0.7, mean rounded"}
    for rule, recs in records_by_rule.items():
        part = recs[:n]
        truth = np.array([names.index(r["label"]) for r in part])
        counts = np.bincount(truth, minlength=len(names))
        majority = int(np.argmax(counts))
        out[rule] = {"tier_accuracy": ci((tiers == truth).astype(float), idx),
                     "majority_label_tier_accuracy": ci((truth == majority).astype(float), idx)}
        if rule == "paper":
            classes = np.array([r["class"] for r in part])
            rounded = np.array([-1 if x is None else int(np.floor(x + 0.5)) for x in scores])
            out[rule]["exact_class_accuracy"] = ci((rounded == classes).astype(float), idx)
    return out


def plot_tiers(sep: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    names = list(sep["tiers"])
    vals = [sep["tiers"][t]["value"] for t in names]
    err = [[v - sep["tiers"][t]["low"] for t, v in zip(names, vals)],
           [sep["tiers"][t]["high"] - v for t, v in zip(names, vals)]]
    ax.bar(names, vals, yerr=err, capsize=6, color=["tab:green", "tab:blue", "tab:purple"][:len(names)])
    ax.set_ylabel("accuracy (expected over 5 trials)")
    ax.set_title("tier accuracy, 95% bootstrap intervals over tasks", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out" / "complexitynet_local")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "complexitynet_local" / "cache.sqlite")
    ap.add_argument("--n", type=int, default=250, help="tasks to label")
    ap.add_argument("--data", default="arithmetic:digits=1-2,ops=1", help="dataset (n is added)")
    ap.add_argument("--tiers", type=Path, default=TIERS)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--threshold", type=int, default=4)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--llm-n", type=int, default=60, help="tasks the untuned LLM baseline scores (0: skip)")
    ap.add_argument("--features", default=",".join(FEATURES), help="comma-separated: tfidf, embedding, both")
    ap.add_argument("--smoke", action="store_true", help="simulated ladder, tiny sizes, seconds: what the test "
                                                         "suite runs so the script cannot go stale")
    args = ap.parse_args()
    features = [f for f in args.features.split(",") if f]
    if args.smoke:
        args.n, args.folds, args.llm_n, features = 40, 3, 0, ["tfidf"]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    started, before = time.perf_counter(), fresh_samples(args.cache)

    tiers = smoke_tiers() if args.smoke else load_tiers(args.tiers)
    queries = load_dataset(f"{args.data},n={args.n}" if ":" in args.data else f"{args.data}:n={args.n}")

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  labelled {done}/{total}  ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"labelling {len(queries)} tasks of {args.data} with tiers {tiers.names}, {args.trials} trials each")
    labels = label_tasks(tiers, queries, args.trials, "threshold", args.threshold, "best", args.cache,
                         concurrency=1, progress=progress)
    labels.write_jsonl(out / "labels.jsonl")
    print("\n".join(labels.summary_lines()))
    labelled_at = time.perf_counter()
    calls_labelling = fresh_samples(args.cache) - before

    by_rule = {"threshold": relabel(list(labels.records), "threshold", args.threshold),
               "paper": relabel(list(labels.records), "paper", args.threshold)}
    with open(out / "labels_paper.jsonl", "w", encoding="utf-8") as f:  # for `llmnet complexity eval --folds`
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in by_rule["paper"])
    sep = tier_separation(by_rule["threshold"])
    for t, v in sep["tiers"].items():
        print(f"tier {t:<7} accuracy {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]")
    for g, v in sep["gaps"].items():
        print(f"gap {g:<16} {v['value']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]  "
              f"wider than both tiers' intervals: {v['wider_than_both_tier_intervals']}")
    plot_tiers(sep, out / "tiers.png")

    variants, reports = {}, {}
    for rule, recs in by_rule.items():
        classes = {}
        for r in recs:
            classes[str(r["class"])] = classes.get(str(r["class"]), 0) + 1
        for feat in features:
            t0 = time.perf_counter()
            report = cross_validate(recs, folds=args.folds, features=feat, success_targets=SUCCESS_TARGETS)
            key = f"{rule}/{feat}"
            reports[key] = report
            variants[key] = {"labels": dict(sorted(classes.items())), **variant_summary(report),
                             "seconds": time.perf_counter() - t0}
            print(f"\n== {key}: {report.evaluation}")
            print("\n".join(report.summary_lines()))
    head_key = "/".join(HEADLINE) if "/".join(HEADLINE) in reports else next(iter(reports))
    reports[head_key].plot(out / "curve.png")

    baseline = llm_baseline(by_rule, args.llm_n, args.cache) if args.llm_n > 0 else None
    if baseline:
        print(f"\nuntuned SmolLM2 (paper's prompt) on {baseline['n']} tasks: tier-label accuracy "
              + "; ".join(f"{rule} {baseline[rule]['tier_accuracy']['value']:.3f} vs majority label "
                          f"{baseline[rule]['majority_label_tier_accuracy']['value']:.3f}" for rule in by_rule))

    h = variants[head_key]
    summary = {
        "setting": {"data": args.data, "n": args.n, "tiers": tiers.names, "trials": args.trials,
                    "threshold": args.threshold, "unsolved": "best", "folds": args.folds, "features": features,
                    "cost_unit": tiers.cost_unit, "smoke": args.smoke, "headline_variant": head_key,
                    "command": "python experiments/complexitynet_local.py" + (" --smoke" if args.smoke else "")},
        "labels": labels.distribution(), "paper_classes": variants[f"paper/{features[0]}"]["labels"],
        "tier_separation": sep,
        "headline": {"variant": head_key, "router_predicted": h["router_predicted"], "majority": h["majority"],
                     "random_at_predicted_cost": h["random_at_predicted_cost"], "oracle": h["oracle"],
                     "always_top": h["always_top"], "always_cheapest": h["always_cheapest"],
                     "router_cost_aware": h["router_cost_aware"], "success": h["success"], "budget": h["budget"],
                     "label_accuracy": h["label_accuracy"]},
        "variants": variants, "llm_baseline": baseline,
        "model_calls_made": fresh_samples(args.cache) - before, "model_calls_labelling": calls_labelling,
        "seconds": {"labelling": labelled_at - started, "total": time.perf_counter() - started},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print(f"\n== headline ({head_key}, {args.folds}-fold cross-validation over {args.n} tasks)")
    for name, o in (("router predicted", h["router_predicted"]), (h["majority"]["name"], h["majority"]),
                    ("random @ predicted's cost", h["random_at_predicted_cost"]), ("oracle", h["oracle"]),
                    (f"always {tiers.names[-1]}", h["always_top"])):
        print(f"{name:<28} accuracy {o['accuracy']:.3f} [{o['accuracy_ci'][0]:.3f}, {o['accuracy_ci'][1]:.3f}] "
              f"cost {o['cost']:.2f}  {o['verdict']}")
    print(f"{summary['model_calls_made']} model calls made in {summary['seconds']['total']:.0f} s; wrote "
          f"{out}/summary.json, labels.jsonl, curve.png, tiers.png")


if __name__ == "__main__":
    main()
