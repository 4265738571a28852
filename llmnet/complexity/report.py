"""The ComplexityNet report: every routing policy with bootstrap intervals, baselines and verdicts.

Policies are scored exactly from the labelling runs: routing task i to tier j earns the
expected accuracy counts_ij / T and costs cost_ij (``success`` / ``costs``). Every row is
read against the same three references, as a reviewer would ask:

* the **majority baseline**: every task sent to the tier that is most often the label on
  the training tasks (the floor a classifier must beat);
* **random @ equal cost**: tasks sent to tier j with the policy's own share of tier j,
  blind to the task (same expected cost; its accuracy is sum_j share_j acc_j per task);
* the **oracle**: per task, the cheapest tier with the highest expected success from its
  pass counts. No policy can beat it on any task; ``build_report`` checks that and raises
  if one does (a bug, never a result).

Intervals: 95% percentile bootstrap over tasks (2,000 resamples, seeded), the same
resamples for every row, so differences are paired. A verdict per row says whether its
accuracy is distinguishable from the majority baseline's (the paired interval of the
difference excludes 0) and, for routers, from random routing at equal cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.errors import LlmnetError

Record = Mapping[str, Any]
RESAMPLES = 2000
LEVEL = 0.95


def success(records: Sequence[Record]) -> np.ndarray:
    """Expected accuracy of each tier on each task: successes / trials (tasks x tiers)."""
    return np.array([[c / r["trials"] for c in r["counts"].values()] for r in records], dtype=float)


def costs(records: Sequence[Record]) -> np.ndarray:
    return np.array([list(map(float, r["cost"].values())) for r in records], dtype=float)


def oracle_tiers(records: Sequence[Record]) -> np.ndarray:
    """Per task the cheapest tier (by its cost on that task) among those with the most successes.

    From pass counts alone, whatever rule made the labels: under the paper's rule a class-2
    task (GPT-3.5 needed) has the label "Code Llama", which the oracle must not copy.
    """
    s, c = success(records), costs(records)
    best = s >= s.max(axis=1, keepdims=True) - 1e-12
    return np.argmin(np.where(best, c, np.inf), axis=1)


def bootstrap_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(values: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` over the resamples ``idx``."""
    means = np.asarray(values, dtype=float)[idx].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Outcome:
    """A policy's mean accuracy and cost per task with 95% intervals, its tier shares, its verdict."""

    accuracy: float
    cost: float
    shares: tuple[float, ...]
    accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    cost_ci: tuple[float, float] = (float("nan"), float("nan"))
    verdict: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "accuracy_ci": list(self.accuracy_ci), "cost": self.cost,
                "cost_ci": list(self.cost_ci), "shares": list(self.shares), "verdict": self.verdict}


def _signed(x: float) -> str:
    """``+0.006``; a difference that three decimals would show as ``+0.000`` keeps two significant digits."""
    return f"{x:+.3f}" if x == 0 or abs(x) >= 5e-4 else f"{x:+.1e}"


def _compare(diff: np.ndarray, idx: np.ndarray, what: str) -> str:
    lo, hi = interval(diff, idx)
    d = float(diff.mean())
    if lo > 0:
        word = "above"
    elif hi < 0:
        word = "below"
    else:
        word = "not distinguishable from"
    return f"{word} {what} ({_signed(d)} [{_signed(lo)}, {_signed(hi)}])"


@dataclass(frozen=True)
class Routing:
    """Per task (in record order) the tier each policy picks, and the router's predicted class.

    ``policies`` maps a row name to tier indices; ``routers`` names the rows that get a
    random-at-equal-cost twin; ``success_targets`` maps a ``success`` row to its target;
    ``sweep`` maps a cost-aware target to tier indices (the plotted curve).
    """

    policies: Mapping[str, np.ndarray]
    routers: tuple[str, ...]
    predicted_class: np.ndarray
    majority: np.ndarray
    success_targets: Mapping[str, float] = field(default_factory=dict)
    sweep: Mapping[float, np.ndarray] = field(default_factory=dict)
    llm: np.ndarray | None = None
    llm_class: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence["Routing"]) -> "Routing":
        """Folds' routings joined, rows in the order of the parts."""

        def join(arrays):
            return np.concatenate(arrays)

        first = parts[0]
        return Routing({k: join([p.policies[k] for p in parts]) for k in first.policies}, first.routers,
                       join([p.predicted_class for p in parts]), join([p.majority for p in parts]),
                       dict(first.success_targets), {t: join([p.sweep[t] for p in parts]) for t in first.sweep},
                       None if first.llm is None else join([p.llm for p in parts]),
                       None if first.llm_class is None else join([p.llm_class for p in parts]))


@dataclass(frozen=True)
class ComplexityReport:
    """The evaluation (see the module docstring); ``evaluation`` says on what tasks and how."""

    tiers: tuple[str, ...]
    cost_unit: str
    evaluation: str
    n_test: int
    n_labelled: int
    target: float | None
    label_accuracy: Mapping[str, Mapping[str, Mapping[str, float] | None]]
    policies: Mapping[str, Outcome]
    success_targets: Mapping[str, float]
    curve: tuple[dict[str, float], ...]

    def saving_captured(self, policy: str) -> float | None:
        """Share of the oracle's saving (always-top cost minus oracle cost) that ``policy`` achieves."""
        top, oracle = self.policies[f"always {self.tiers[-1]}"].cost, self.policies["oracle"].cost
        if top - oracle <= 0:
            return None
        return (top - self.policies[policy].cost) / (top - oracle)

    def to_data(self) -> dict[str, Any]:
        return {"tiers": list(self.tiers), "cost_unit": self.cost_unit, "evaluation": self.evaluation,
                "n_test": self.n_test, "n_labelled": self.n_labelled, "target": self.target,
                "label_accuracy": {k: dict(v) for k, v in self.label_accuracy.items()},
                "policies": {k: v.to_data() for k, v in self.policies.items()},
                "success_targets": [{"policy": k, "target": t, "realised": self.policies[k].accuracy,
                                     "realised_ci": list(self.policies[k].accuracy_ci), "cost": self.policies[k].cost}
                                    for k, t in self.success_targets.items()],
                "saving_captured": {k: self.saving_captured(k) for k in self.policies},
                "curve": list(self.curve)}

    def summary_lines(self) -> list[str]:
        lines = [f"{self.evaluation}: {self.n_test} tasks ({self.n_labelled} labelled); cost per task in "
                 f"{self.cost_unit}; 95% bootstrap intervals over tasks"]
        for name, acc in self.label_accuracy.items():
            cells = []
            for kind in ("exact", "tier"):
                a = acc.get(kind)
                cells.append(f"{kind} n/a" if a is None else f"{kind} {a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]")
            lines.append(f"label accuracy {name:<16} " + "  ".join(cells))
        width = max(len(n) for n in self.policies)
        for name, o in self.policies.items():
            lines.append(f"{name:<{width}}  accuracy {o.accuracy:.3f} [{o.accuracy_ci[0]:.3f}, {o.accuracy_ci[1]:.3f}]"
                         f"  cost {o.cost:.3g} [{o.cost_ci[0]:.3g}, {o.cost_ci[1]:.3g}]"
                         + (f"  {o.verdict}" if o.verdict else ""))
        for name, t in self.success_targets.items():
            o = self.policies[name]
            met = ("meets the target" if o.accuracy >= t else "below the target, inside its interval"
                   if o.accuracy_ci[1] >= t else "misses the target")
            lines.append(f"success target {t:.2f}: realised {o.accuracy:.3f} [{o.accuracy_ci[0]:.3f}, "
                         f"{o.accuracy_ci[1]:.3f}] ({met}) at cost {o.cost:.3g}")
        return lines

    def plot(self, path: str | Path) -> None:
        """All policies and the cost-aware target sweep on one cost-accuracy plot (PNG)."""
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

        fig = Figure(figsize=(7, 5))
        ax = fig.subplots()
        fixed = [self.policies[f"always {t}"] for t in self.tiers]
        ax.plot([o.cost for o in fixed], [o.accuracy for o in fixed], "s--", color="grey", label="always one tier")
        for t, o in zip(self.tiers, fixed):
            ax.annotate(t, (o.cost, o.accuracy), textcoords="offset points", xytext=(4, -10), fontsize=8)
        if self.curve:
            ax.plot([p["cost"] for p in self.curve], [p["accuracy"] for p in self.curve], "o-", color="tab:blue",
                    markersize=3, label="router cost_aware (target sweep)")
        for name, o in self.policies.items():
            err = [[o.accuracy - o.accuracy_ci[0]], [o.accuracy_ci[1] - o.accuracy]]
            if name == "oracle":
                ax.errorbar(o.cost, o.accuracy, yerr=err, fmt="*", color="gold", markersize=12, label=name)
            elif name.startswith("majority"):
                ax.errorbar(o.cost, o.accuracy, yerr=err, fmt="P", color="black", markersize=9, label=name)
            elif name.startswith("router success"):
                ax.errorbar(o.cost, o.accuracy, yerr=err, fmt="o", color="tab:purple", markersize=6,
                            label="router success (targets)" if name == next(iter(self.success_targets)) else None)
            elif name.startswith("router budget"):
                ax.errorbar(o.cost, o.accuracy, yerr=err, fmt="v", color="tab:green", markersize=6,
                            label="router budget" if name == next(n for n in self.policies
                                                                  if n.startswith("router budget")) else None)
            elif name.startswith("router"):
                ax.errorbar(o.cost, o.accuracy, yerr=err, fmt="D", color="tab:cyan", markersize=7, label=name)
            elif name.startswith("random"):
                ax.plot(o.cost, o.accuracy, "x", color="tab:red", markersize=7,
                        label="random @ equal cost" if name == next(n for n in self.policies
                                                                    if n.startswith("random")) else None)
        ax.set_xlabel(f"cost per task ({self.cost_unit})")
        ax.set_ylabel("accuracy (expected over trials)")
        ax.set_title(f"ComplexityNet routing, {self.evaluation}, {self.n_test} tasks", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(self.to_data(), indent=2) + "\n", encoding="utf-8")
        self.plot(out / "curve.png")
        return out / "report.json", out / "curve.png"


def build_report(records: Sequence[Record], routing: Routing, cost_unit: str, evaluation: str,
                 target: float | None = None, seed: int = 0) -> ComplexityReport:
    """Score every policy of ``routing`` on ``records`` (module docstring); raises if one beats the oracle.

    A task may appear in several rows (repeated cross-validation): its rows are averaged
    before bootstrapping, so the intervals resample tasks, not repeats.
    """
    names = list(records[0]["counts"])
    s, c = success(records), costs(records)
    n, rows = len(records), np.arange(len(records))
    ids = [str(r["id"]) for r in records]
    unique = list(dict.fromkeys(ids))
    position = {u: i for i, u in enumerate(unique)}
    group = np.array([position[i] for i in ids])
    size = np.bincount(group)

    def per_task(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=np.asarray(values, dtype=float)) / size

    idx = bootstrap_indices(len(unique), seed=seed)
    vectors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def pick(tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tiers = np.asarray(tiers, dtype=int)
        return s[rows, tiers], c[rows, tiers], np.bincount(tiers, minlength=len(names)) / n

    def blind(shares: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return s @ shares, c @ shares, shares

    for j, t in enumerate(names):
        vectors[f"always {t}"] = pick(np.full(n, j))
    majority_names = sorted({names[j] for j in routing.majority})
    majority_row = f"majority tier ({', '.join(majority_names)})"
    vectors[majority_row] = pick(routing.majority)
    for name, tiers in routing.policies.items():
        vectors[name] = pick(tiers)
        if name in routing.routers:
            vectors[f"random @ equal cost ({name.removeprefix('router ')})"] = blind(vectors[name][2])
    if routing.llm is not None:
        vectors["llm baseline (untuned)"] = pick(routing.llm)
    vectors["oracle"] = pick(oracle_tiers(records))
    vectors["random @ equal cost (oracle)"] = blind(vectors["oracle"][2])

    best = vectors["oracle"][0]
    for name, (acc, _, _) in vectors.items():
        worse = np.flatnonzero(acc > best + 1e-12)
        if worse.size:
            i = int(worse[0])
            raise LlmnetError(f"sanity check failed: policy '{name}' beats the oracle on task '{records[i]['id']}' "
                              f"({acc[i]:.3f} > {best[i]:.3f}); the evaluation is wrong, not the router right")

    base = vectors[majority_row][0]
    policies: dict[str, Outcome] = {}
    for name, (acc, cost, shares) in vectors.items():
        verdict = []
        if name != majority_row and not name.startswith("always"):
            verdict.append(_compare(per_task(acc - base), idx, "the majority baseline"))
        twin = f"random @ equal cost ({name.removeprefix('router ')})"
        if name in routing.routers and twin in vectors:
            verdict.append(_compare(per_task(acc - vectors[twin][0]), idx, "random at equal cost"))
        policies[name] = Outcome(float(acc.mean()), float(cost.mean()), tuple(float(x) for x in shares),
                                 interval(per_task(acc), idx), interval(per_task(cost), idx), "; ".join(verdict))

    labelled = np.array([r.get("label") is not None for r in records])
    truth = np.array([names.index(r["label"]) if r.get("label") is not None else -1 for r in records])
    classes = np.array([r["class"] if r.get("class") is not None else -1 for r in records])
    paper = records[0].get("rule") == "paper"

    def label_hits(hits: np.ndarray) -> dict[str, float] | None:
        if not labelled.any():
            return None
        keep = labelled[np.unique(group, return_index=True)[1]]
        h = per_task(hits.astype(float))[keep]
        lo, hi = interval(h, bootstrap_indices(len(h), seed=seed))
        return {"value": float(h.mean()), "low": lo, "high": hi}

    predicted_tier = routing.policies.get("router predicted")
    label_accuracy = {}
    if predicted_tier is not None:
        label_accuracy["router"] = {"exact": label_hits(routing.predicted_class == classes),
                                    "tier": label_hits(predicted_tier == truth)}
    label_accuracy["majority label"] = {"exact": None, "tier": label_hits(routing.majority == truth)}
    if routing.llm is not None:
        label_accuracy["llm baseline"] = {
            "exact": label_hits(routing.llm_class == classes) if paper and routing.llm_class is not None else None,
            "tier": label_hits(routing.llm == truth)}

    curve = []
    for t, tiers in sorted(routing.sweep.items()):
        acc, cost, shares = pick(tiers)
        r_acc, r_cost, _ = blind(shares)
        curve.append({"target": float(t), "accuracy": float(acc.mean()), "cost": float(cost.mean()),
                      "random_accuracy": float(r_acc.mean()), "random_cost": float(r_cost.mean())})
    n_labelled = int(labelled[np.unique(group, return_index=True)[1]].sum())
    return ComplexityReport(tuple(names), cost_unit, evaluation, len(unique), n_labelled, target, label_accuracy,
                            policies, dict(routing.success_targets), tuple(curve))
