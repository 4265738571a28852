"""Benchmark: exact Vote accuracy (llmnet.scaling.vote) against the authors' Monte Carlo.

    python experiments/bench_scaling.py --json experiments/out/bench_scaling.json

The same seeded pools (1,000 synthetic queries, M = 200 cached generations each) are
evaluated at every K = 1..200 in two ways:

* exact: :func:`llmnet.scaling.vote.vote_accuracy_pools` on all pools (median of ``--reps``
  runs);
* Monte Carlo, the authors' method (Chen et al.'s analysis code): resample K generations
  from the pool 1,000 times per K and take the plurality, vectorised with numpy
  (:func:`llmnet.scaling.vote.vote_accuracy_mc`). Its cost is linear in the number of
  queries and does not depend on the answer distribution, so it is timed on a random
  subset of ``--mc-queries`` pools and scaled to the full set (said in the JSON).

The literal authors' loop (``np.random.choice`` then ``Counter.most_common`` per trial) is
also timed on one pool with 100 trials and scaled, as a second reference. Timings are CPU
time of this process (``time.process_time``), which is steadier than wall time on a shared
machine; wall times are recorded too. Accuracy: the exact values are checked against an
independent brute-force enumeration of count vectors (small K), and the Monte-Carlo error
against the exact values is reported.

Pool sets: ``multiple_choice`` (2, 4 or 5 options plus unparseable answers, like the
paper's datasets) is the headline; ``free_form`` (10 options) is a harder stress case.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import scipy
import scipy.stats

from llmnet.scaling.vote import Pool, pool_counts, vote_accuracy_mc, vote_accuracy_pools

LETTERS = "ABCDEFGHIJ"


def synthetic_pools(n: int, m: int, seed: int, options=(2, 4, 5)) -> list[Pool]:
    """Varied answer distributions: per query a number of options, a per-call accuracy
    from an easy / medium / hard Beta, a share of unparseable answers, and the wrong mass
    spread over the distractors by a Dirichlet(0.7); then ``m`` sampled generations."""
    rng = np.random.default_rng(seed)
    pools = []
    for i in range(n):
        n_opt = int(rng.choice(options))
        p = (rng.beta(8, 2), rng.beta(2, 2), rng.beta(2, 6))[rng.integers(3)]
        p_none = rng.beta(1, 30)
        wrong = rng.dirichlet(np.full(n_opt - 1, 0.7)) * max(1.0 - p - p_none, 0.0)
        probs = np.concatenate([[p], wrong, [p_none]])
        counts = rng.multinomial(m, probs / probs.sum())
        answers = [a for a, c in zip([*LETTERS[:n_opt], None], counts) for _ in range(c)]
        pools.append(Pool(f"q{i}", tuple(answers), "A"))
    return pools


def enumerate_accuracy(counts: np.ndarray, k: int) -> float:
    """Independent reference: sum over all count vectors of a K-draw (multisets of size
    K) of the multinomial probability times the tie-weighted win of the true answer."""
    q = counts / counts.sum()
    log_q = np.log(np.where(q > 0, q, 1.0))
    total = 0.0
    for draw in itertools.combinations_with_replacement(range(q.size), k):
        c = np.bincount(draw, minlength=q.size)
        if np.any(c[q == 0] > 0):
            continue
        logp = (scipy.special.gammaln(k + 1) - scipy.special.gammaln(c + 1).sum()
                + float(c @ log_q))
        top = c.max()
        if c[0] == top:
            total += np.exp(logp) / np.count_nonzero(c == top)
    return total


def authors_loop(pool: Pool, ks, trials: int, seed: int) -> np.ndarray:
    """The authors' per-trial loop: ``np.random.choice`` then ``Counter`` (first-seen tie)."""
    np.random.seed(seed)
    labels, weights = zip(*Counter(pool.answers).items())
    keys = np.array(["<none>" if a is None else a for a in labels])
    w = np.array(weights, dtype=float) / len(pool.answers)
    out = []
    for k in ks:
        wins = 0
        for _ in range(trials):
            draw = np.random.choice(keys, k, p=w)
            wins += max(Counter(draw).items(), key=lambda kv: kv[1])[0] == pool.correct
        out.append(wins / trials)
    return np.array(out)


def timed(fn, reps: int) -> tuple[list[float], list[float], object]:
    cpu, wall, result = [], [], None
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall, result


def bench_set(name: str, pools: list[Pool], ks: np.ndarray, trials: int, mc_queries: int,
              reps: int, seed: int) -> dict:
    n = len(pools)
    cpu_ex, wall_ex, exact = timed(lambda: vote_accuracy_pools(pools, ks), reps)
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(n, size=min(mc_queries, n), replace=False))

    def run_mc():
        gen = np.random.default_rng(seed + 1)
        return np.array([vote_accuracy_mc(pools[i], ks, trials, gen) for i in subset])

    cpu_mc, wall_mc, mc = timed(run_mc, reps)
    scale = n / subset.size
    mc_cpu_full = float(np.median(cpu_mc)) * scale
    mc_wall_full = float(np.median(wall_mc)) * scale
    exact_cpu, exact_wall = float(np.median(cpu_ex)), float(np.median(wall_ex))
    err = np.abs(mc - exact[subset])
    wins = np.round(mc * trials).astype(int)  # MC successes out of `trials`, per (pool, K)
    p_value = np.minimum(1.0, 2 * np.minimum(scipy.stats.binom.cdf(wins, trials, exact[subset]),
                                             scipy.stats.binom.sf(wins - 1, trials,
                                                                  exact[subset])))
    ref_rows = subset[:8]
    ref_ks = [k for k in ks if k <= 6]
    enum = np.array([[enumerate_accuracy(pool_counts(pools[i]), k) for k in ref_ks]
                     for i in ref_rows])
    exact_err = float(np.max(np.abs(enum - exact[np.ix_(ref_rows, np.arange(len(ref_ks)))])))
    return {
        "pool_set": name,
        "sizes": {"n_queries": n, "pool_size_M": len(pools[0].answers), "k_min": int(ks[0]),
                  "k_max": int(ks[-1]), "n_k": int(ks.size), "mc_trials_per_k": trials,
                  "mc_timed_queries": int(subset.size),
                  "mean_answer_classes": float(np.mean([pool_counts(p).size for p in pools]))},
        "exact_seconds_cpu": {"median": exact_cpu, "runs": cpu_ex},
        "exact_seconds_wall": {"median": exact_wall, "runs": wall_ex},
        "mc_seconds_cpu_subset": {"median": float(np.median(cpu_mc)), "runs": cpu_mc},
        "mc_seconds_cpu_full_estimate": mc_cpu_full,
        "mc_seconds_wall_full_estimate": mc_wall_full,
        "mc_full_estimate_note": f"MC timed on {subset.size} of {n} queries, scaled by "
                                 f"{scale:.1f} (MC cost is linear in queries)",
        "speedup": mc_cpu_full / exact_cpu,
        "speedup_wall": mc_wall_full / exact_wall,
        "max_abs_error": {
            "exact_vs_enumeration": exact_err,
            "exact_vs_enumeration_scope": f"{ref_rows.size} pools, K <= {max(ref_ks)}",
            "mc_vs_exact": float(err.max()),
            "mc_vs_exact_mean": float(err.mean()),
            "mc_vs_exact_min_binomial_p_value": float(p_value.min()),
            "mc_vs_exact_p_value_note": f"two-sided exact binomial test of each MC estimate "
                                        f"against the exact value; {p_value.size} tests, so "
                                        f"~{1 / p_value.size:.1e} is the expected minimum",
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("experiments/out/bench_scaling.json"))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=200, help="generations per pool")
    parser.add_argument("--kmax", type=int, default=200)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--mc-queries", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    parser.add_argument("--stress-queries", type=int, default=300,
                        help="queries in the free-form stress set (0 to skip)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.queries, args.m, args.kmax, args.trials, args.mc_queries, args.reps, args.stress_queries = 20, 20, 20, 20, 2, 1, 0
    if min(args.queries, args.m, args.kmax, args.trials, args.mc_queries, args.reps) < 1:
        print("error: sizes must be positive", file=sys.stderr)
        return 2
    ks = np.arange(1, args.kmax + 1)
    sets = {"multiple_choice": synthetic_pools(args.queries, args.m, args.seed)}
    if args.stress_queries:
        sets["free_form"] = synthetic_pools(args.stress_queries, args.m, args.seed + 7,
                                            options=(10,))
    results = [bench_set(name, pools, ks, args.trials, args.mc_queries, args.reps, args.seed)
               for name, pools in sets.items()]
    loop_pool = sets["multiple_choice"][0]
    loop_trials = 5 if args.smoke else 100
    c0 = time.process_time()
    authors_loop(loop_pool, ks, loop_trials, args.seed)
    loop_per_query = (time.process_time() - c0) * args.trials / loop_trials
    head = results[0]
    out = {
        **head,
        "stress": results[1:],
        "authors_loop": {
            "seconds_cpu_per_query_estimate": loop_per_query,
            "seconds_cpu_full_estimate": loop_per_query * args.queries,
            "speedup_vs_exact": loop_per_query * args.queries / head["exact_seconds_cpu"]["median"],
            "note": f"np.random.choice + Counter per trial, timed on 1 pool with {loop_trials} "
                    f"trials per K and scaled to {args.trials} trials and {args.queries} pools",
        },
        "target_speedup": 100,
        "meets_target": head["speedup"] >= 100,
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "scipy": scipy.__version__, "machine": platform.machine()},
        "command": "python experiments/bench_scaling.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    for r in results:
        s, err = r["sizes"], r["max_abs_error"]
        print(f"[{r['pool_set']}] {s['n_queries']} queries x K=1..{s['k_max']} "
              f"(M={s['pool_size_M']}): exact {r['exact_seconds_cpu']['median']:.2f} s, "
              f"MC {r['mc_seconds_cpu_full_estimate']:.1f} s (est.) -> speedup "
              f"{r['speedup']:.0f}x (wall {r['speedup_wall']:.0f}x); max |MC - exact| "
              f"{err['mc_vs_exact']:.3f}, max |exact - enumeration| "
              f"{err['exact_vs_enumeration']:.1e}")
    print(f"authors' loop: {out['authors_loop']['seconds_cpu_full_estimate']:.0f} s (est.) -> "
          f"{out['authors_loop']['speedup_vs_exact']:.0f}x; target >= 100x on multiple_choice: "
          f"{'PASS' if out['meets_target'] else 'FAIL'}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
