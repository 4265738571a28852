"""SMART in the paper's simulated setting (Jo & Trummer 2024, arXiv 2403.13835).

Per item, each cheaper model agrees with GPT-4 with probability equal to the agreement
the paper measured on 100 items; SMART runs for delta in {0.02, ..., 0.20}, gamma 0.95,
10 seeds, four variants: {faithful Clopper-Pearson, anytime-valid} x {single model, mix}.

Costs per item from OpenAI's prices per 1K tokens (prompt / completion): gpt-4-0613
.03/.06, gpt-3.5-turbo-1106 .001/.002, gpt-3.5-turbo-instruct .0015/.002, davinci-002
.002/.002, babbage-002 .0004/.0004; one completion token (max_tokens 1). Prompt tokens
per item are the averages the authors measured over 100 items (their released
``llm_result.csv``): instruction + text is 316 tokens for IMDB reviews, 50 for SMS and 86
for AG News on the chat models (gpt-4, gpt-3.5-turbo); the completion-API models
(instruct, davinci, babbage) see 7 fewer tokens (no chat framing): 309, 43, 79.

    .venv/bin/python experiments/smart_paper.py [--out DIR] [--seeds 10]

Writes ``smart_paper.json``, ``smart_paper.png`` (savings vs delta) and
``smart_paper_bounds_{clopper-pearson,anytime}.png`` (one IMDB run's bounds at
delta = 0.08) to DIR (default experiments/out/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmnet.smart.session import plot_bounds, simulate_smart

PRICES = {  # $ per 1K tokens: (prompt, completion)
    "gpt-4-0613": (0.03, 0.06),
    "gpt-3.5-turbo-1106": (0.001, 0.002),
    "gpt-3.5-turbo-instruct": (0.0015, 0.002),
    "davinci-002": (0.002, 0.002),
    "babbage-002": (0.0004, 0.0004),
}
CHAT = {"gpt-4-0613", "gpt-3.5-turbo-1106"}
DATASETS = {  # items, agreement with GPT-4 (turbo, instruct, davinci, babbage), chat prompt tokens
    "IMDB": (50_000, (0.94, 0.96, 0.0, 0.0), 316),
    "SMS Spam": (5_574, (0.94, 0.88, 0.0, 0.0), 50),
    "AG News": (127_600, (0.90, 0.94, 0.01, 0.0), 86),
}
PAPER_AVERAGE = {"IMDB": 7.2, "SMS Spam": 4.2, "AG News": 4.8}
PAPER_MAX = 25.6
DELTAS = tuple(round(0.02 * i, 2) for i in range(1, 11))
VARIANTS = {  # name: (bound, mix)
    "faithful": ("clopper-pearson", False),
    "faithful+mix": ("clopper-pearson", True),
    "anytime": ("anytime", False),
    "anytime+mix": ("anytime", True),
}
REFERENCE = "gpt-4-0613"
CANDIDATES = ("gpt-3.5-turbo-1106", "gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")


def item_costs(chat_prompt_tokens: int) -> dict[str, float]:
    """Dollars per item for each model (see the module docstring)."""
    out = {}
    for model, (p, c) in PRICES.items():
        tokens = chat_prompt_tokens if model in CHAT else chat_prompt_tokens - 7
        out[model] = (tokens * p + 1 * c) / 1000.0
    return out


def run(seeds: int) -> dict:
    rows = []
    for dataset, (n_items, rates, tokens) in DATASETS.items():
        costs = item_costs(tokens)
        agreement = dict(zip(CANDIDATES, rates))
        for variant, (bound, mix) in VARIANTS.items():
            for delta in DELTAS:
                for seed in range(seeds):
                    r = simulate_smart(agreement, costs, n_items, delta=delta, gamma=0.95,
                                       bound=bound, mix=mix, seed=seed, reference=REFERENCE)
                    rows.append({
                        "dataset": dataset, "variant": variant, "delta": delta, "seed": seed,
                        "savings": r.savings, "profiled": r.profiled,
                        "realised_agreement": r.realised_agreement, "target_met": r.target_met,
                        "plan": dict(r.plan.counts),
                    })
    return summarise(rows, seeds)


def summarise(rows: list[dict], seeds: int) -> dict:
    per_delta, per_dataset = [], []
    for dataset in DATASETS:
        for variant in VARIANTS:
            means = []
            for delta in DELTAS:
                sel = [r for r in rows if (r["dataset"], r["variant"], r["delta"]) == (dataset, variant, delta)]
                sav = np.array([r["savings"] for r in sel])
                means.append(sav.mean())
                per_delta.append({
                    "dataset": dataset, "variant": variant, "delta": delta,
                    "savings_mean": sav.mean(), "savings_min": sav.min(), "savings_max": sav.max(),
                    "profiled_mean": float(np.mean([r["profiled"] for r in sel])),
                    "target_met": float(np.mean([r["target_met"] for r in sel])),
                    "realised_min": float(min(r["realised_agreement"] for r in sel)),
                })
            means = np.array(means)
            per_dataset.append({
                "dataset": dataset, "variant": variant,
                "savings_mean_over_deltas": means.mean(),
                "savings_harmonic_over_deltas": len(means) / np.sum(1.0 / means),
                "savings_max": max(r["savings_max"] for r in per_delta[-len(DELTAS):]),
                "target_met": float(np.mean([r["target_met"] for r in per_delta[-len(DELTAS):]])),
            })
    return {"seeds": seeds, "deltas": DELTAS, "paper_average": PAPER_AVERAGE, "paper_max": PAPER_MAX,
            "per_delta": per_delta, "per_dataset": per_dataset, "runs": rows}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(14, 4), sharey=True)
    for ax, dataset in zip(axes, DATASETS):
        for variant in VARIANTS:
            sel = [r for r in summary["per_delta"] if (r["dataset"], r["variant"]) == (dataset, variant)]
            ax.plot([r["delta"] for r in sel], [r["savings_mean"] for r in sel], marker="o", label=variant)
        ax.axhline(PAPER_AVERAGE[dataset], color="black", ls="--", lw=1, label="paper average")
        ax.set_title(dataset)
        ax.set_xlabel("delta")
        ax.set_yscale("log")
    axes[0].set_ylabel("savings vs GPT-4 only (x)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/out"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    args = ap.parse_args()
    if args.smoke:
        args.seeds = 1
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    summary = run(args.seeds)
    summary["seconds"] = time.time() - start
    (args.out / "smart_paper.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(summary, args.out / "smart_paper.png")
    n_items, rates, tokens = DATASETS["IMDB"]
    for bound in ("clopper-pearson", "anytime"):
        example = simulate_smart(dict(zip(CANDIDATES, rates)), item_costs(tokens), n_items, delta=0.08,
                                 bound=bound, seed=0, reference=REFERENCE)
        plot_bounds(example, args.out / f"smart_paper_bounds_{bound}.png")

    print(f"SMART, paper setting: {args.seeds} seeds x {len(DELTAS)} deltas, gamma 0.95 ({summary['seconds']:.0f} s)")
    print(f"{'dataset':10s} {'variant':13s} {'mean x':>7s} {'harm. x':>7s} {'max x':>6s} {'met':>5s}   per delta")
    for row in summary["per_dataset"]:
        sel = [r for r in summary["per_delta"] if (r["dataset"], r["variant"]) == (row["dataset"], row["variant"])]
        print(f"{row['dataset']:10s} {row['variant']:13s} {row['savings_mean_over_deltas']:7.2f} "
              f"{row['savings_harmonic_over_deltas']:7.2f} {row['savings_max']:6.1f} {row['target_met']:5.2f}   "
              + " ".join(f"{r['savings_mean']:.1f}" for r in sel))
    print("\ntarget: faithful average savings within 20% of the paper. The paper's aggregation is not")
    print("stated: 'mean' = arithmetic mean over deltas of the per-delta savings; 'cost' = total GPT-4")
    print("cost over the delta sweep / total SMART cost (the harmonic mean of the per-delta savings)")
    print(f"{'dataset':9s} {'paper':>5s}  " + "  ".join(f"{v + ' ' + k:>22s}" for v in ("faithful", "faithful+mix")
                                                    for k in ("mean", "cost")))
    for dataset, paper in PAPER_AVERAGE.items():
        cells = []
        for variant in ("faithful", "faithful+mix"):
            row = next(r for r in summary["per_dataset"] if (r["dataset"], r["variant"]) == (dataset, variant))
            for kind in ("mean", "harmonic"):
                got = row[f"savings_{kind}_over_deltas"]
                verdict = "PASS" if abs(got / paper - 1) <= 0.2 else "FAIL"
                cells.append(f"{got:6.2f} ({got / paper - 1:+5.0%}) {verdict}")
        print(f"{dataset:9s} {paper:5.1f}  " + "  ".join(f"{c:>22s}" for c in cells))
    best = max(r["savings_max"] for r in summary["per_dataset"] if r["variant"].startswith("faithful"))
    print(f"  largest faithful saving {best:.1f}x (paper: up to {PAPER_MAX}x)")
    print("anytime savings as a share of faithful (mean over deltas; harmonic in brackets)")
    for dataset in DATASETS:
        for base in ("faithful", "faithful+mix"):
            f, a = (next(r for r in summary["per_dataset"] if (r["dataset"], r["variant"]) == (dataset, v))
                    for v in (base, base.replace("faithful", "anytime")))
            print(f"  {dataset:9s} {base.replace('faithful', 'anytime'):11s} "
                  f"{a['savings_mean_over_deltas'] / f['savings_mean_over_deltas']:5.0%} "
                  f"({a['savings_harmonic_over_deltas'] / f['savings_harmonic_over_deltas']:.0%})")


if __name__ == "__main__":
    main()
