"""The README's experiments table, generated from the JSON the scripts wrote (never typed by hand).

    python experiments/readme_table.py            # rewrite the table in README.md
    python experiments/readme_table.py --check    # exit 1 if README.md's table is stale

Each row's headline is computed here from ``experiments/out``; a script whose output is not
committed says so. ``--smoke`` is ``--check`` (what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"
START, END = "<!-- experiments:start -->", "<!-- experiments:end -->"


def _load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def bench_executor(d: dict) -> str:
    parts = [f"overhead vs bare gather {d['overhead']['overhead_ratio']:.2f}x"]
    if "langgraph_ratio" in d.get("langgraph", {}):
        parts.append(f"time vs LangGraph {d['langgraph']['langgraph_ratio']:.2f}x")
    parts += [f"rate {d['rate_limit']['rate_fraction']:.3f} of the limit",
              f"cache {d['cache']['write_samples_per_s'] / 1e3:.0f}k/{d['cache']['read_samples_per_s'] / 1e3:.0f}k "
              "samples/s write/read", f"{d['memory']['peak_rss_mb']:.0f} MB peak for {d['memory']['queries']:,} queries"]
    return "; ".join(parts)


def bench_requests(d: dict) -> str:
    return "; ".join(f"K={r['k']}: requests x{r['requests_ratio']:.2f}, prompt tokens x{r['prompt_tokens_ratio']:.2f}, "
                     f"client overhead {r['client_overhead_ratio']:.2f}x" for r in d["results"])


def bench_scaling(d: dict) -> str:
    return (f"exact estimator {d['speedup']:.0f}x faster than Monte Carlo (CPU); max abs(exact - enumeration) "
            f"{d['max_abs_error']['exact_vs_enumeration']:.0e}")


def scaling_local(d: dict) -> str:
    rows = []
    for run, r in d["runs"].items():
        g = r["groups"]["overall"]
        rows.append(f"{run}: {g['shape']}, K=1 {g['acc_k1']:.3f} -> K={d['pool']} {g['acc_kmax']:.3f}, "
                    f"K* {g['k_star']['value']}; MAE (fit K<={d['fit_max_k']}) "
                    + ", ".join(f"{k} {v:.3f}" for k, v in g["mae"].items()))
    return f"{d['queries']} queries per task; " + "; ".join(rows)


def scaling_real(d: dict) -> str:
    b = d["budgets"]["fit_k5"]["groups"]
    pub = d["authors_law_mae_fit_k5_published"]
    return "fit on K<=5, MAE to K=250: " + "; ".join(
        f"{name} ({g['shape']}, K* {g['k_star']['value']}): "
        + ", ".join(f"{k} {v:.4f}" for k, v in g["mae"].items())
        + (f" (authors' code {pub[name]})" if name in pub else "") for name, g in b.items())


def complexitynet_local(d: dict) -> str:
    h = d["headline"]
    return (f"router tier accuracy {h['router_tier_accuracy']:.1%} vs most-common tier "
            f"{h['majority_label_tier_accuracy']:.1%} and untuned LLM {h['llm_baseline_tier_accuracy']:.1%}; "
            f"end accuracy {h['end_accuracy']:.1%} (always-top {h['always_top_accuracy']:.1%}) at "
            f"{h['cost_reduction_vs_top']:.0%} less cost")


def smart_paper(d: dict) -> str:
    by = {}
    for row in d["per_dataset"]:
        by.setdefault(row["variant"], []).append(f"{row['dataset']} {row['savings_mean_over_deltas']:.1f}x")
    return "; ".join(f"{v}: {', '.join(rows)}" for v, rows in by.items()) + " (mean over deltas of per-run savings)"


def smart_guarantee(d: dict) -> str:
    variants = next(iter(d["results"].values()))
    worst = {v: max(r[v]["shortfall_rate"] for r in d["results"].values()) for v in variants}
    return f"{d['seeds']} seeds per setting; worst shortfall rate " + ", ".join(
        f"{v} {w:.1%}" for v, w in worst.items()) + f" (allowed {1 - d['gamma']:.0%})"


def smart_local(d: dict) -> str:
    return "; ".join(f"{k}: x{r['savings']:.2f} at agreement {r['realised_agreement']:.3f}" for k, r in d["runs"].items()) \
        + f" (target {d['target_agreement']})"


ROWS = [  # script, what it measures, output under experiments/out, headline
    ("bench_executor.py", "executor overhead, LangGraph, rate limits, cache, memory (simulated)", "bench_executor.json",
     bench_executor),
    ("bench_requests.py", "vLLM n=K path vs per-sample path, client overhead (loopback fake server)",
     "bench_requests.json", bench_requests),
    ("bench_scaling.py", "exact vote estimator vs the authors' Monte Carlo (synthetic pools)", "bench_scaling.json",
     bench_scaling),
    ("scaling_theory.py", "bi-level theory, K*, fits (simulated pools)", "scaling_theory.json", None),
    ("scaling_local.py", "real SmolLM2 and Gemma-3-270M, Vote on sums and on multiple choice, fits on K <= 5",
     "scaling_local.json", scaling_local),
    ("scaling_real.py", "real gpt-3.5 pools (last letters), every fit per group", "scaling_real.json", scaling_real),
    ("complexitynet_local.py", "ComplexityNet with real local tiers", "complexitynet_local/summary.json",
     complexitynet_local),
    ("smart_paper.py", "SMART in the paper's setting (simulated agreements)", "smart_paper.json", smart_paper),
    ("smart_guarantee.py", "how often each SMART bound's guarantee fails (simulated)", "smart_guarantee.json",
     smart_guarantee),
    ("smart_local.py", "SMART on real local subgraphs", "smart_local.json", smart_local),
    ("fake_openai_server.py", "the loopback OpenAI-compatible test server the benchmarks use", None, None),
]


def table() -> str:
    lines = ["| script | what | headline (from its JSON) |", "|---|---|---|"]
    for script, what, output, headline in ROWS:
        data = _load(output) if output else None
        if output is None:
            text = "a helper, no figures"
        elif data is None:
            text = f"no committed output (`experiments/out/{output}`): run the script"
        elif headline is None:
            text = f"see `experiments/out/{output}`"
        else:
            try:
                text = headline(data)
            except (KeyError, TypeError, ValueError) as exc:
                text = f"output of an older format ({type(exc).__name__}: {exc}): rerun the script"
        lines.append(f"| `{script}` | {what} | {text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if README.md's table differs")
    ap.add_argument("--smoke", action="store_true", help="the same as --check (what the test suite runs)")
    args = ap.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 1
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{table()}\n{END}", text, flags=re.S)
    if args.check or args.smoke:
        scripts = {p.name for p in (ROOT / "experiments").glob("*.py")} - {"readme_table.py"}
        missing = scripts - {row[0] for row in ROWS}
        if missing:
            print(f"scripts without a row here: {sorted(missing)}", file=sys.stderr)
            return 1
        if new != text:
            print("README.md's experiments table is stale: run python experiments/readme_table.py", file=sys.stderr)
            return 1
        print("README.md's experiments table is up to date")
        return 0
    readme.write_text(new, encoding="utf-8")
    print("rewrote the experiments table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
