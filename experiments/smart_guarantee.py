"""Does SMART's guarantee hold? Simulated candidates near the agreement target.

SMART promises: with probability >= gamma, at most a share delta of the outputs differ from
the reference's. Here delta = 0.10 (target agreement 0.90), gamma = 0.95, and N = 5,000
items per run (``--items``; the paper's datasets have 5,574 to 127,600 items; fewer keep
1,000 seeds per setting to a few minutes). The profiled items always agree (they carry
the reference's outputs), so the fewer the items, the more they mask a too-weak model
applied to the rest; hence the "L>p" column, the failure of the bound itself. The
reference costs 1 per item, candidates 0.02 to 0.10. Settings:

    below        one candidate with true agreement 0.89
    at           one candidate at 0.90
    above        one candidate at 0.91
    well-above   one candidate at 0.93
    crowd        three cheap candidates at 0.89, 0.89, 0.90 and a good one at 0.96
    imdb-0.06    the paper's IMDB setting (50,000 items, its four candidates and costs,
                 see smart_paper.py) at delta = 0.06, where gpt-3.5-turbo's agreement
                 0.94 sits exactly on the target

Per setting and variant ({Clopper-Pearson as in the paper, anytime-valid} x {single
model, mix}): how often the realised agreement over all N items falls short of 0.90 (the
guarantee holds when that rate <= 1 - gamma = 0.05), how often a candidate whose true
agreement is below 0.90 is applied, how often a credited lower bound exceeds the truth,
and the mean savings. The faithful variants share one profiling per seed; anytime+mix
profiles on its own, for the mix: it keeps profiling candidates that cannot serve alone
while more items are projected to make the mix cheaper (``SmartSession(stop_for_mix=...)``).
Then the anytime variants' savings as a share of the faithful ones' (target >= 80%).

    .venv/bin/python experiments/smart_guarantee.py [--out DIR] [--seeds 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from smart_paper import CANDIDATES, DATASETS, REFERENCE

from llmnet.smart.bounds import clopper_pearson
from llmnet.smart.session import Candidate, SmartSession, Status
from llmnet.smart.simulate import simulate_application, simulate_profiling

N_ITEMS = 5_000
DELTA = 0.10
GAMMA = 0.95
_IMDB_ITEMS, _IMDB_RATES, _IMDB_COSTS = (DATASETS["IMDB"]["n_items"], DATASETS["IMDB"]["agreement"],
                                          DATASETS["IMDB"]["costs"])
SETTINGS = {  # name: (reference cost, {candidate: (agreement, cost)}, delta, items or None for --items)
    "below": (1.0, {"m": (0.89, 0.05)}, DELTA, None),
    "at": (1.0, {"m": (0.90, 0.05)}, DELTA, None),
    "above": (1.0, {"m": (0.91, 0.05)}, DELTA, None),
    "well-above": (1.0, {"m": (0.93, 0.05)}, DELTA, None),
    "crowd": (1.0, {"w1": (0.89, 0.02), "w2": (0.89, 0.03), "w3": (0.90, 0.04), "good": (0.96, 0.10)}, DELTA, None),
    "imdb-0.06": (_IMDB_COSTS[REFERENCE], {m: (_IMDB_RATES[m], _IMDB_COSTS[m]) for m in CANDIDATES},
                  0.06, _IMDB_ITEMS),
}
VARIANTS = {"faithful": ("clopper-pearson", False), "faithful+mix": ("clopper-pearson", True),
            "anytime": ("anytime", False), "anytime+mix": ("anytime", True)}


def run_setting(setting: tuple, bound: str, seeds: int, default_items: int) -> dict[str, dict]:
    """Both plans (single model, mix) of ``seeds`` profiling runs with one bound."""
    ref_cost, candidates, delta, n_items = setting
    n_items = n_items or default_items
    rates = {m: p for m, (p, _) in candidates.items()}
    weak = {m for m, p in rates.items() if p < 1.0 - delta}
    tally = {mix: {"short": 0, "weak_accepted": 0, "weak_applied": 0, "bound_wrong": 0, "savings": []}
             for mix in (False, True)}
    profiled = {False: [], True: []}
    for seed in range(seeds):
        session = None
        for mix, t in tally.items():
            # the anytime bound with the mix profiles on its own (for the mix)
            if session is None or (mix and bound == "anytime"):
                session = SmartSession(n_items, Candidate("ref", ref_cost),
                                       [Candidate(m, c) for m, (_, c) in candidates.items()],
                                       delta=delta, gamma=GAMMA, bound=bound, mix=mix)
                simulate_profiling(session, rates, np.random.default_rng(seed))
            profiled[mix].append(session.profiled)
            accepted = any(session.status(m) is Status.SATISFIED for m in weak)
            plan = session.plan(mix=mix)
            r = session.result(simulate_application(plan, rates, np.random.default_rng([seed, 1])), mix=mix)
            used = [m for m in plan.counts if m != "ref"]
            t["short"] += not r.target_met
            t["weak_accepted"] += accepted
            t["weak_applied"] += any(m in weak and plan.lowers[m] >= 1.0 - delta for m in used)
            t["bound_wrong"] += any(plan.lowers[m] > rates[m] for m in used)
            t["savings"].append(r.savings)
    out = {}
    for mix, t in tally.items():
        lo, hi = clopper_pearson(t["short"], seeds, 0.95)
        out["mix" if mix else "single"] = {
            "shortfall_rate": t["short"] / seeds, "shortfall_ci": [float(lo), float(hi)],
            "weak_accepted_rate": t["weak_accepted"] / seeds, "weak_applied_rate": t["weak_applied"] / seeds,
            "bound_above_truth_rate": t["bound_wrong"] / seeds,
            "savings_mean": float(np.mean(t["savings"])), "profiled_mean": float(np.mean(profiled[mix])),
            "guarantee_holds": t["short"] / seeds <= 1.0 - GAMMA,
        }
    return out


def plot(results: dict, n_items: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(SETTINGS)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4))
    width = 0.8 / len(VARIANTS)
    for i, variant in enumerate(VARIANTS):
        x = np.arange(len(names)) + (i - (len(VARIANTS) - 1) / 2) * width
        rows = [results[s][variant] for s in names]
        rate = np.array([r["shortfall_rate"] for r in rows])
        err = np.abs(np.array([r["shortfall_ci"] for r in rows]).T - rate)
        ax1.bar(x, rate, width, yerr=err, capsize=2, label=variant)
        ax2.bar(x, [r["bound_above_truth_rate"] for r in rows], width, label=variant)
        ax3.bar(x, [r["savings_mean"] for r in rows], width, label=variant)
    for ax in (ax1, ax2):
        ax.axhline(1 - GAMMA, color="black", ls="--", lw=1, label="1 - gamma")
    ax1.set_ylabel("P(realised agreement < 1 - delta)")
    ax2.set_ylabel("P(a credited lower bound > true agreement)")
    ax3.set_ylabel("mean savings (x)")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(np.arange(len(names)), names)
        ax.legend(fontsize=7)
    ax1.set_title(f"guarantee: N={n_items}, delta={DELTA}, gamma={GAMMA} (imdb: paper's)")
    ax2.set_title("the bound behind the plan fails")
    ax3.set_title("cost savings vs reference only")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/out"))
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    ap.add_argument("--items", type=int, default=N_ITEMS, help="items per run")
    args = ap.parse_args()
    if args.smoke:
        args.seeds, args.items = 2, 200
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results = {}
    for s, setting in SETTINGS.items():
        results[s] = {}
        for bound, name in (("clopper-pearson", "faithful"), ("anytime", "anytime")):
            both = run_setting(setting, bound, args.seeds, args.items)
            results[s][name], results[s][name + "+mix"] = both["single"], both["mix"]
    seconds = time.time() - start
    ratio = {s: results[s]["anytime"]["savings_mean"] / results[s]["faithful"]["savings_mean"] for s in SETTINGS}
    ratio_mix = {s: results[s]["anytime+mix"]["savings_mean"] / results[s]["faithful+mix"]["savings_mean"]
                 for s in SETTINGS}
    summary = {"n_items": args.items, "delta": DELTA, "gamma": GAMMA, "seeds": args.seeds, "seconds": seconds,
               "settings": {s: {"reference_cost": rc, "candidates": {m: list(v) for m, v in c.items()},
                                "delta": d, "n_items": n or args.items} for s, (rc, c, d, n) in SETTINGS.items()},
               "results": results, "anytime_savings_fraction": ratio, "anytime_mix_savings_fraction": ratio_mix}
    (args.out / "smart_guarantee.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(results, args.items, args.out / "smart_guarantee.png")

    print(f"SMART guarantee: N={args.items}, delta={DELTA}, gamma={GAMMA} (imdb-0.06: N=50,000, delta=0.06), "
          f"{args.seeds} seeds per cell ({seconds:.0f} s)")
    print("short: realised agreement < 1 - delta; weak acc.: a candidate below 1 - delta marked satisfied;")
    print("weak app.: one applied as if satisfying; L>p: a credited lower bound above the truth")
    print(f"{'setting':11s} {'variant':13s} {'short':>6s} {'95% CI':>13s} {'weak acc.':>9s} {'weak app.':>9s} "
          f"{'L>p':>6s} {'savings':>7s} {'profiled':>8s}  guarantee")
    for s in SETTINGS:
        for v in VARIANTS:
            r = results[s][v]
            print(f"{s:11s} {v:13s} {r['shortfall_rate']:6.3f} [{r['shortfall_ci'][0]:.3f},{r['shortfall_ci'][1]:.3f}] "
                  f"{r['weak_accepted_rate']:9.3f} {r['weak_applied_rate']:9.3f} {r['bound_above_truth_rate']:6.3f} "
                  f"{r['savings_mean']:7.2f} {r['profiled_mean']:8.0f}  {'PASS' if r['guarantee_holds'] else 'FAIL'}")
    print("\ntarget: anytime savings >= 80% of faithful")
    for s in SETTINGS:
        print(f"  {s:11s} single {ratio[s]:5.0%} {'PASS' if ratio[s] >= 0.8 else 'FAIL'}   "
              f"mix {ratio_mix[s]:5.0%} {'PASS' if ratio_mix[s] >= 0.8 else 'FAIL'}")


if __name__ == "__main__":
    main()
