"""Chen et al.'s bi-level scaling theory, checked on synthetic sample pools.

    python experiments/scaling_theory.py [--out DIR] [--n 1000] [--m 400]

Cases: ``inverse-U`` (alpha, p1, p2) = (0.6, 0.85, 0.4) with p1 + p2 > 1 and ``U`` (0.4,
0.65, 0.1) with p1 + p2 < 1, the paper's examples; beyond the paper, ``heterogeneous``:
per-call accuracies drawn from a two-Beta mixture, where the bi-level model is wrong.

For each case: the paper's closed-form K* against the exact argmax (argmin for U) of the
true curve; then ``n`` queries with ``m`` cached generations each
(:func:`draw_bilevel_pools`, drawn from llmnet's simulated backend through the executor),
exact pool accuracies at K <= 20 and every law fitted on
them -- the bi-level model, the authors' per-query law (faithful: Monte-Carlo targets, 100
trials; and on exact targets), and the multi-level mixture (ours). Each fitted curve is
compared with the true curve of the drawn queries, ``mean_q I_K(p_q)``, over K = 1..1000
(mean absolute error) and its K* with the true one. Targets: |K* error| <= 2 and MAE <=
0.01. Writes ``scaling_theory.json`` and ``scaling_theory.png`` into DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llmnet import loads_network  # noqa: E402
from llmnet.scaling.experiment import draw_pools  # noqa: E402
from llmnet.scaling.laws import (  # noqa: E402
    bilevel_curve,
    bilevel_k_star,
    binary_vote,
    fit_bilevel,
    fit_mixture,
)
from llmnet.scaling.query_law import fit_per_query_law  # noqa: E402
from llmnet.scaling.vote import Pool, vote_accuracy_pools  # noqa: E402
from llmnet.tasks.query import Query  # noqa: E402

SIM_NETWORK = """
models: {sim: {backend: simulated, model: theory, distractors: %(d)d, seed: %(seed)d}}
nodes:
  gen: {kind: generator, model: sim}
"""

CASES = {
    "inverse-U": {"alpha": 0.6, "p1": 0.85, "p2": 0.4},
    "U": {"alpha": 0.4, "p1": 0.65, "p2": 0.1},
    "heterogeneous": {"mixture": [(0.55, 16.0, 3.0), (0.45, 4.0, 9.0)]},  # (weight, a, b)
}
K_TRUE = np.arange(1, 1001)
FIT_MAX_K = 20
LAWS = ("bilevel", "per_query_law_mc", "per_query_law_exact", "mixture")


def pools_from_accuracies(p: np.ndarray, m: int, seed: int, n_distractors: int = 1) -> list[Pool]:
    """``m`` generations per query from llmnet's simulated backend, through the executor:
    query q is answered right with probability ``p_q`` (its ``p_correct``), else with one of
    the distractors (the first twice as likely as each other; with one distractor the answers
    are binary, as in the bi-level theory). A synthetic model: theory checks only."""
    network = loads_network(SIM_NETWORK % {"d": n_distractors, "seed": seed})
    queries = [Query(f"q{i}", f"item {i}", "7", p_correct=float(pq)) for i, pq in enumerate(p)]
    pools, _ = draw_pools(network, queries, m, cache_path=None, concurrency=256)
    return pools


def bilevel_accuracies(n: int, alpha: float, p1: float, p2: float, seed: int) -> np.ndarray:
    """True per-call accuracies: ``p1`` for an easy query (probability ``alpha``), else ``p2``."""
    return np.where(np.random.default_rng(seed).random(n) < alpha, p1, p2)


def draw_bilevel_pools(n: int, alpha: float, p1: float, p2: float, m: int, seed: int,
                       n_distractors: int = 1) -> list[Pool]:
    """``n`` bi-level queries with ``m`` cached generations each; the true accuracies are
    :func:`bilevel_accuracies` with the same ``seed``."""
    return pools_from_accuracies(bilevel_accuracies(n, alpha, p1, p2, seed), m, seed,
                                 n_distractors)


def mixture_accuracies(n: int, components, seed: int) -> np.ndarray:
    """Per-call accuracies from a mixture of Betas ``[(weight, a, b), ...]``."""
    rng = np.random.default_rng(seed)
    w = np.array([c[0] for c in components])
    which = rng.choice(len(components), size=n, p=w / w.sum())
    return np.array([rng.beta(components[k][1], components[k][2]) for k in which])


def run_case(name: str, spec: dict, n: int, m: int, seed: int) -> dict:
    t0 = time.process_time()
    if "mixture" in spec:
        p_true = mixture_accuracies(n, spec["mixture"], seed)
        pools = pools_from_accuracies(p_true, m, seed)
        theory = None
    else:
        p_true = bilevel_accuracies(n, spec["alpha"], spec["p1"], spec["p2"], seed)
        pools = draw_bilevel_pools(n, spec["alpha"], spec["p1"], spec["p2"], m, seed)
        theory = bilevel_k_star(spec["alpha"], spec["p1"], spec["p2"])
    true_curve = binary_vote(p_true[:, None], K_TRUE[None, :]).mean(axis=0)
    kind = theory.kind if theory else ("argmin" if name == "U" else "argmax")
    pick = np.argmax if kind == "argmax" else np.argmin
    k_true = int(K_TRUE[pick(true_curve)])
    fit_ks = np.arange(1, FIT_MAX_K + 1)
    acc = vote_accuracy_pools(pools, fit_ks)
    mean, se = acc.mean(axis=0), acc.std(axis=0, ddof=1) / np.sqrt(len(pools))
    fits = {
        "bilevel": fit_bilevel(fit_ks, mean, se, k_range=(1, 1000), seed=seed),
        "per_query_law_mc": fit_per_query_law(pools, fit_max_k=FIT_MAX_K, targets="mc",
                                              rng=seed, k_range=(1, 1000)),
        "per_query_law_exact": fit_per_query_law(pools, fit_max_k=FIT_MAX_K, targets="exact",
                                                 k_range=(1, 1000)),
        "mixture": fit_mixture(fit_ks, mean, se, k_range=(1, 1000), seed=seed),
    }
    laws = {}
    for law, fit in fits.items():
        pred, lo, hi = fit.predict(K_TRUE)
        k_pred = int(K_TRUE[pick(pred)])
        mae = float(np.mean(np.abs(pred - true_curve)))
        laws[law] = {"k_star_pred": k_pred, "k_star_fit": None if fit.k_star is None else fit.k_star.to_dict(),
                     "k_star_error": k_pred - k_true, "mae": mae,
                     "band_covers_truth": float(np.mean((lo <= true_curve) & (true_curve <= hi))),
                     "k_star_pass": abs(k_pred - k_true) <= 2, "mae_pass": mae <= 0.01,
                     "fit": fit.to_dict(), "curve": pred.tolist(), "lo": lo.tolist(),
                     "hi": hi.tolist()}
    out = {"case": name, "spec": spec, "n_queries": n, "m": m, "seed": seed, "kind": kind,
           "k_star_true_argopt": k_true, "true_curve": true_curve.tolist(),
           "fit_data": {"ks": fit_ks.tolist(), "acc": mean.tolist(), "se": se.tolist()},
           "laws": laws, "seconds_cpu": time.process_time() - t0}
    if theory is not None:
        population = bilevel_curve(spec["alpha"], spec["p1"], spec["p2"], K_TRUE)
        out["theory"] = {"closed_form_k_star": theory.k_closed_form, "x_star": theory.x_star,
                         "exact_k_star": theory.k_exact, "shape": theory.shape,
                         "argopt_population_curve": int(K_TRUE[pick(population)]),
                         "closed_form_matches_exact": theory.k_closed_form == theory.k_exact,
                         "realised_easy_share": float(np.mean(p_true == spec["p1"]))}
        for law in laws.values():
            law["mae_vs_population_curve"] = float(np.mean(np.abs(
                np.asarray(law["curve"]) - population)))
    return out


def plot(results: list[dict], path: Path) -> None:
    colors = {"bilevel": "tab:blue", "per_query_law_mc": "tab:green",
              "per_query_law_exact": "tab:olive", "mixture": "tab:red"}
    fig, axes = plt.subplots(1, len(results), figsize=(5.4 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        ax.plot(K_TRUE, res["true_curve"], color="black", lw=2.2,
                label="true curve (drawn queries)")
        fd = res["fit_data"]
        ax.errorbar(fd["ks"], fd["acc"], yerr=1.96 * np.asarray(fd["se"]), fmt="o", ms=3,
                    color="black", label="exact pool accuracy (fit data)")
        for law, r in res["laws"].items():
            ax.plot(K_TRUE, r["curve"], color=colors[law], lw=1.3,
                    label=f"{law}: MAE {r['mae']:.4f}, K* {r['k_star_pred']}")
            ax.fill_between(K_TRUE, r["lo"], r["hi"], color=colors[law], alpha=0.12, lw=0)
        ax.axvline(res["k_star_true_argopt"], color="black", ls=":", lw=1,
                   label=f"true K* = {res['k_star_true_argopt']} ({res['kind']})")
        ax.axvspan(1, FIT_MAX_K, color="0.93", zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("number of LLM calls K")
        ax.set_ylabel("vote accuracy")
        ax.set_title(f"{res['case']}: {res['spec']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"Fits on K <= {FIT_MAX_K} (shaded) extrapolated to K = 1000", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/out"))
    parser.add_argument("--n", type=int, default=1000, help="queries per case")
    parser.add_argument("--m", type=int, default=400, help="cached generations per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.m, args.cases = 8, 10, args.cases[:1]
    if args.n < 4 or args.m < 1:
        print("error: need --n >= 4 and --m >= 1", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_case(c, CASES[c], args.n, args.m, args.seed + i)
               for i, c in enumerate(args.cases)]
    for res in results:
        th = res.get("theory")
        if th:
            print(f"[{res['case']}] theory: closed-form K* {th['closed_form_k_star']} vs exact "
                  f"{th['exact_k_star']:.0f} ({th['shape']}): "
                  f"{'PASS' if th['closed_form_matches_exact'] else 'FAIL'}")
        print(f"[{res['case']}] true K* of the drawn queries = {res['k_star_true_argopt']} "
              f"({res['kind']})")
        for law, r in res["laws"].items():
            print(f"  {law:20s} K* {r['k_star_pred']:4d} "
                  f"({'PASS' if r['k_star_pass'] else 'FAIL'})  MAE(K<=1000) {r['mae']:.4f} "
                  f"({'PASS' if r['mae_pass'] else 'FAIL'})  "
                  f"band covers {r['band_covers_truth']:.0%}")
    (args.out / "scaling_theory.json").write_text(json.dumps(
        {"fit_max_k": FIT_MAX_K, "k_max": int(K_TRUE[-1]), "targets": {
            "k_star_abs_error_max": 2, "mae_max": 0.01}, "cases": results}, indent=1))
    plot(results, args.out / "scaling_theory.png")
    print(f"wrote {args.out / 'scaling_theory.json'} and {args.out / 'scaling_theory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
