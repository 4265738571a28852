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
    sizes = [k for k in d["cpu"] if k.isdigit()]
    cpu = "; ".join(f"{int(n):,} queries: {d['cpu'][n]['vs_bare_sequential']:.2f}x bare sequential CPU/sample, "
                    f"cache on {d['cpu'][n]['cache_on_vs_off']:.2f}x off" for n in sizes)
    lg = d["cpu"][sizes[0]].get("langgraph_vs_llmnet")
    lat, mem, rate, cache = d["latency"], d["memory"], d["rate"], d["cache"]
    big = max((k for k in mem if k.isdigit()), key=int)
    parts = [cpu]
    if lg is not None:
        parts.append(f"LangGraph {lg:.0f}x more CPU")
    parts += [f"50 ms calls, 256 in flight: {lat['llmnet_vs_bare']:.2f}x bare ({lat['llmnet_cache_vs_bare']:.2f}x with "
              "the cache)",
              f"memory growth at {int(big):,} queries: library {mem[big]['library_growth_mb']:.0f} MB, CLI "
              f"{mem[big]['cli_growth_mb']:.0f} MB (bare {mem[big]['bare_growth_mb']:.0f} MB)",
              f"cache {cache['write_samples_per_s'] / 1e3:.0f}k/{cache['read_samples_per_s'] / 1e3:.0f}k samples/s "
              f"write/read ({cache['write_vs_raw']:.2f}x/{cache['read_vs_raw']:.2f}x raw sqlite3 on the same machine)",
              f"rate limit: at most {rate['max_in_any_window']['0.1']} admitted in any 0.1 s (allowed "
              f"{rate['allowed']['0.1']:g}), {rate['max_in_any_window']['1.0']} in any 1 s (allowed "
              f"{rate['allowed']['1.0']:g})" + (
                  f", up to {seen['0.1']} / {seen['1.0']} as the backend saw them (event-loop delay)"
                  if (seen := rate.get("max_in_any_window_seen_by_backend")) else "")]
    return "; ".join(parts)


def bench_local(d: dict) -> str:
    if "skipped" in d:
        return d["skipped"]
    return (f"{d['model']}, {d['queries']} queries x K={d['k']}: llmnet at concurrency {d['default_concurrency']} "
            f"{d['default_vs_direct']:.2f}x a direct llama.cpp loop in wall time, {d['default_vs_direct_cpu']:.2f}x in "
            f"CPU (sequential {d['sequential_vs_direct']:.2f}x); "
            f"samples identical at every concurrency: {'yes' if d['all_identical'] else 'NO'}"
            + (f"; llama.cpp evaluations per prompt {d['evals_per_prompt']['llmnet']:.1f} "
               f"(direct loop {d['evals_per_prompt']['direct']:.1f})" if "evals_per_prompt" in d else ""))


def bench_requests(d: dict) -> str:
    return "; ".join(f"K={r['k']}: requests x{r['requests_ratio']:.2f}, prompt tokens x{r['prompt_tokens_ratio']:.2f}, "
                     f"client overhead {r['client_overhead_ratio']:.2f}x" for r in d["results"])


def bench_ray(d: dict) -> str:
    rows = "; ".join(f"{r['workers']} worker(s) x{r['throughput_ratio']:.2f} of local ({r['overhead_ms_per_sample']:+.2f} "
                     f"ms/sample; once started x{r['steady_samples_per_s'] / d['local']['samples_per_s']:.2f}, "
                     f"{r['steady_overhead_ms_per_sample']:+.2f} ms/sample; start {r['startup_s']:.1f} s)"
                     for r in d["ray"])
    load = d["machine"].get("load_avg_1m")
    busy = f" (machine load {load['before']:.1f} to {load['after']:.1f} on {d['machine']['cpus']} CPUs)" if load else ""
    return f"{d['samples']:,} samples at {d['latency_s'] * 1e3:.0f} ms a call{busy}, local " \
        f"{d['local']['samples_per_s']:,.0f}/s; " + rows


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
    def acc(o: dict) -> str:
        return f"{o['accuracy']:.3f} [{o['accuracy_ci'][0]:.3f}, {o['accuracy_ci'][1]:.3f}]"

    def word(o: dict) -> str:  # the verdict against the majority baseline, shortened
        v = o["verdict"].split(";")[0]
        return "= majority" if v.startswith("not distinguishable") else "> majority" if v.startswith("above") \
            else "< majority"

    s = d["setting"]
    tiers = d["tier_separation"]["tiers"]
    out = [f"{s['n']} sums ({s['data']}), tiers " + " / ".join(
        f"{t} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for t, v in tiers.items())]
    for key, v in d["variants"].items():
        succ = next((r for r in v["success"] if r["target"] == 0.3), None)
        out.append(f"{key} ({s['folds']}-fold CV): router {acc(v['router_predicted'])} at cost "
                   f"{v['router_predicted']['cost']:.2f} ({word(v['router_predicted'])}) vs {v['majority']['name']} "
                   f"{acc(v['majority'])}, random at equal cost {acc(v['random_at_predicted_cost'])}"
                   + (f", success@0.3 {acc(succ)} at cost {succ['cost']:.2f}" if succ else "")
                   + "".join(f", budget at success@0.3's cost {acc(b)} at cost {b['cost']:.2f}"
                             for b in v.get("budget", []) if b["budget_of"] == "success@0.3"))
    h = d["headline"]
    out.append(f"oracle {acc(h['oracle'])} at cost {h['oracle']['cost']:.2f}; always-{s['tiers'][-1]} "
               f"{acc(h['always_top'])} at cost {h['always_top']['cost']:.2f}")
    return "; ".join(out)


def smart_paper(d: dict) -> str:
    if "anytime_mix_share_of_faithful_mix" not in d:
        raise KeyError("anytime_mix_share_of_faithful_mix")
    by = {}
    for row in d["per_dataset"]:
        by.setdefault(row["variant"], []).append(
            f"{row['dataset']} {row['savings_total']:.2f}x ({row['savings_seed_min']:.1f}-{row['savings_seed_max']:.1f})")
    paper = ", ".join(f"{k} {v}x" for k, v in d["paper_average"].items())
    share = ", ".join(f"{k} {v:.0%}" for k, v in d["anytime_mix_share_of_faithful_mix"].items())
    return ("; ".join(f"{v}: {', '.join(rows)}" for v, rows in by.items())
            + f" (total/total over deltas, {d['seeds']} seeds pooled, per-seed range; paper {paper}); "
              f"anytime+mix share of faithful+mix {share}; mixes dearer than the single plan: "
              f"{len(d['mix_dearer_than_single'])}")


def smart_guarantee(d: dict) -> str:
    variants = next(iter(d["results"].values()))
    worst = {v: max(d["results"].values(), key=lambda r: r[v]["shortfall_rate"])[v] for v in variants}
    return f"{d['seeds']} seeds per setting; worst shortfall rate [95% CI] " + ", ".join(
        f"{v} {w['shortfall_rate']:.1%} [{w['shortfall_ci'][0]:.1%}, {w['shortfall_ci'][1]:.1%}]"
        for v, w in worst.items()) + f" (allowed {1 - d['gamma']:.0%})"


def smart_local(d: dict) -> str:
    return "; ".join(f"{k}: x{r['savings']:.2f} at agreement {r['realised_agreement']:.3f}" for k, r in d["runs"].items()) \
        + f" (target {d['target_agreement']})"


def bench_serve(d: dict) -> str:
    parts = "; ".join(f"call latency {r['latency_s']}s: {r['served_rps_median']:.0f} vs {r['direct_rps_median']:.0f} "
                      f"req/s, HTTP layer {r['http_overhead']:.0%}" for r in d["results"])
    r0 = d["results"][0]
    cpu = (f"; CPU per request at {r0['latency_s']}s: network {r0['cpu_ms']['direct']:.3f} ms, server "
           f"{r0['cpu_ms']['server']:.3f} ms (HTTP {r0['cpu_bound_overhead']:.0%} of a CPU-bound server; uvicorn "
           f"serving a do-nothing app {r0['cpu_ms']['uvicorn_floor']:.3f} ms)" if "cpu_ms" in r0 else "")
    return parts + cpu + f" ({r0['clients']} clients, {d['cpus']} shared cores; goal < 20%)"
def sandbox_attack(d: dict) -> str:
    s = d["summary"]
    parts = [f"{mode}: side effects {s[mode]['all side effects']['contained']}/{s[mode]['all side effects']['total']}, "
             f"forged passes stopped {s[mode]['forging']['contained']}/{s[mode]['forging']['total']}"
             for mode in ("kernel", "hook", "both", "bwrap", "userns") if mode in s]
    weak = s.get("both", {}).get("weak tests")
    tail = f"; weak (non-equality) tests forged {weak['total'] - weak['contained']}/{weak['total']}" if weak else ""
    return f"{d['attacks']} hostile programs, contained by " + "; ".join(parts) + tail


ROWS = [  # script, what it measures, output under experiments/out, headline
    ("bench_executor.py", "executor CPU per sample vs bare asyncio and LangGraph, latency, memory, cache, rate "
     "windows (fake backends)", "bench_executor.json", bench_executor),
    ("bench_local.py", "real SmolLM2 through the local backend vs a direct llama.cpp loop", "bench_local.json",
     bench_local),
    ("bench_requests.py", "vLLM n=K path vs per-sample path, client overhead (loopback fake server)",
     "bench_requests.json", bench_requests),
    ("bench_ray.py", "Ray-sharded runs vs the local executor at 1, 2, 4 workers (simulated, 50 ms calls)",
     "bench_ray.json", bench_ray),
    ("bench_scaling.py", "exact vote estimator vs the authors' Monte Carlo (synthetic pools)", "bench_scaling.json",
     bench_scaling),
    ("scaling_theory.py", "bi-level theory, K*, fits (simulated pools)", "scaling_theory.json", None),
    ("scaling_local.py", "real SmolLM2 and Gemma-3-270M, Vote on sums and on multiple choice, fits on K <= 5",
     "scaling_local.json", scaling_local),
    ("scaling_real.py", "real gpt-3.5 pools (last letters), every fit per group", "scaling_real.json", scaling_real),
    ("complexitynet_local.py", "ComplexityNet on a real SmolLM2 ladder (1 sample / vote-3 / vote-5), both label rules x TF-IDF / embeddings / both, 5-fold CV", "complexitynet_local/summary.json",
     complexitynet_local),
    ("smart_paper.py", "SMART in the paper's setting (simulated agreements)", "smart_paper.json", smart_paper),
    ("smart_guarantee.py", "how often each SMART bound's guarantee fails (simulated)", "smart_guarantee.json",
     smart_guarantee),
    ("smart_local.py", "SMART on real local subgraphs", "smart_local.json", smart_local),
    ("bench_serve.py", "llmnet serve vs ainvoke directly, requests/s at 64 clients (simulated network)",
     "bench_serve.json", bench_serve),
    ("sandbox_attack.py", "hostile programs vs the sandbox: kernel layers alone (unshare; bwrap; userns), audit hook "
     "alone, both",
     "sandbox_attack.json", sandbox_attack),
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
