"""Splits, training with validation, and the held-out evaluation of a ComplexityNet router.

End-to-end numbers come from the labelling runs, not from new model calls: a label
record holds, for every tier, its successes over T independent trials and its cost on
that task. Routing a task to tier j therefore earns the expected accuracy
counts_j / T and costs cost_j, and every policy (the router, each fixed tier, random
routing, the oracle) is scored exactly on the same draws. (``Tiers.gated`` runs the
real gated network; with the labelling cache its trial-0 answers cost nothing.)

Policies on the test split:

* ``always <tier>`` for every tier (the first is always-cheapest, the last always-top);
* ``router predicted`` and ``router cost_aware@target`` (``llmnet.complexity.router``);
* ``random @ equal cost``: each task sent to tier j with the router's share of tier j,
  independently of the task: the same expected cost, accuracy sum_j share_j acc_j;
* ``oracle``: the cheapest tier that solves the task (its label); for an unsolved task,
  the cheapest tier with the most successes; random routing at the oracle's cost bounds
  how far any router can beat random at equal cost;
* ``llm baseline`` (optional): the untuned LLM's 1-5 score collapsed onto tiers.

Label accuracy (on labelled test tasks): exact (the class; 1..5 under the paper's rule)
and tier-collapsed, as Bae et al. report them, with the training split's most frequent
label as the floor a classifier has to beat.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.complexity.classifier import ComplexityClassifier, RouterModel, score_to_tier, select_c
from llmnet.complexity.router import decide
from llmnet.errors import ArtefactError

Record = Mapping[str, Any]
SWEEP = tuple(round(x, 3) for x in np.linspace(0.05, 1.0, 20))


def tier_names(records: Sequence[Record]) -> list[str]:
    return list(records[0]["counts"])


def split_records(records: Sequence[Record], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
                  ) -> tuple[list[Record], list[Record], list[Record]]:
    """Train / validation / test, stratified by label (unsolved tasks are a stratum), seeded."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.999 < sum(fractions) < 1.001:
        raise ArtefactError(f"split fractions must be three numbers >= 0 summing to 1, got {list(fractions)}")
    groups: dict[str, list[Record]] = {}
    for rec in sorted(records, key=lambda r: str(r["id"])):
        groups.setdefault(str(rec.get("label")), []).append(rec)
    rng = random.Random(seed)
    train, val, test = [], [], []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        n_train = round(len(group) * fractions[0])
        n_val = round(len(group) * fractions[1])
        train += group[:n_train]
        val += group[n_train:n_train + n_val]
        test += group[n_train + n_val:]
    return train, val, test


def success(records: Sequence[Record]) -> np.ndarray:
    """Expected accuracy of each tier on each task: successes / trials (tasks x tiers)."""
    return np.array([[c / r["trials"] for c in r["counts"].values()] for r in records], dtype=float)


def costs(records: Sequence[Record]) -> np.ndarray:
    return np.array([list(map(float, r["cost"].values())) for r in records], dtype=float)


def true_tiers(records: Sequence[Record]) -> list[int | None]:
    names = tier_names(records)
    return [None if r.get("label") is None else names.index(r["label"]) for r in records]


def oracle_tiers(records: Sequence[Record]) -> np.ndarray:
    """The label where the task is solved, else the cheapest tier with the most successes."""
    names = tier_names(records)
    out = []
    for r in records:
        counts = list(r["counts"].values())
        if r.get("label") is not None and not r.get("unsolved"):
            out.append(names.index(r["label"]))
        else:
            out.append(max(range(len(counts)), key=lambda j: (counts[j], -j)))
    return np.array(out, dtype=int)


@dataclass(frozen=True)
class Outcome:
    """A routing policy's expected accuracy and cost per task, and its share of tasks per tier."""

    accuracy: float
    cost: float
    shares: tuple[float, ...]

    def to_data(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "cost": self.cost, "shares": list(self.shares)}


def outcome(records: Sequence[Record], tiers: Sequence[int]) -> Outcome:
    s, c = success(records), costs(records)
    rows = np.arange(len(records))
    idx = np.asarray(tiers, dtype=int)
    shares = np.bincount(idx, minlength=s.shape[1]) / len(records)
    return Outcome(float(s[rows, idx].mean()), float(c[rows, idx].mean()), tuple(float(x) for x in shares))


def random_at(records: Sequence[Record], shares: Sequence[float]) -> Outcome:
    """Tasks sent to tier j with probability shares[j], blind to the task (exact expectation)."""
    w = np.asarray(shares)
    return Outcome(float(success(records).mean(axis=0) @ w), float(costs(records).mean(axis=0) @ w), tuple(shares))


def choose_target(records: Sequence[Record], model: RouterModel, tolerance: float = 0.01,
                  grid: Sequence[float] = SWEEP) -> tuple[float, list[dict[str, float]]]:
    """The cheapest cost-aware target within ``tolerance`` of always-top's accuracy on ``records``.

    Without one, the target of highest accuracy (cheaper on ties). Returns it and the sweep.
    """
    proba = model.tier_proba([r["question"] for r in records])
    top = outcome(records, [len(model.tiers) - 1] * len(records))
    table = []
    for t in grid:
        o = outcome(records, decide(proba, "cost_aware", t))
        table.append({"target": float(t), "accuracy": o.accuracy, "cost": o.cost})
    good = [row for row in table if row["accuracy"] >= top.accuracy - tolerance - 1e-12]
    if good:
        best = min(good, key=lambda row: (row["cost"], -row["accuracy"]))
    else:
        best = max(table, key=lambda row: (row["accuracy"], -row["cost"]))
    return best["target"], table


def train_router(records: Sequence[Record], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                 tolerance: float = 0.01) -> RouterModel:
    """Split, choose C (validation log loss) and the cost-aware target (validation), refit, return the artefact.

    The target is chosen with the model fitted on the training split only, so the
    validation tasks are unseen when it is picked; the returned model is refitted on
    training + validation. The test ids are kept in ``meta.split`` for ``evaluate``.
    """
    names = tier_names(records)
    train, val, test = split_records(records, fractions, seed)
    class_tier: dict[int, int] = {}
    for r in records:
        if r.get("class") is not None:
            tier = names.index(r["label"])
            if class_tier.setdefault(int(r["class"]), tier) != tier:
                raise ArtefactError(f"record '{r['id']}': class {r['class']} maps to tier '{r['label']}', but another "
                                    f"record maps it to '{names[class_tier[int(r['class'])]]}'")

    def xy(part: Sequence[Record]) -> tuple[list[str], list[int]]:
        kept = [r for r in part if r.get("class") is not None]
        return [r["question"] for r in kept], [int(r["class"]) for r in kept]

    mean_costs = costs(records).mean(axis=0).tolist()
    cost_unit = str(records[0].get("cost_unit", "calls"))
    best_c, losses = select_c(xy(train), xy(val))
    meta: dict[str, Any] = {"rule": records[0].get("rule"), "trials": records[0]["trials"], "C": best_c,
                            "validation_log_loss": {str(k): v for k, v in losses.items()},
                            "split": {"fractions": list(fractions), "seed": seed, "train": len(train),
                                      "validation": len(val), "test_ids": [str(r["id"]) for r in test]}}
    if val:
        first = RouterModel.from_classifier(ComplexityClassifier(C=best_c).fit(*xy(train)), names, mean_costs,
                                            cost_unit, class_tier)
        target, table = choose_target(val, first, tolerance)
        meta.update(target=target, target_tolerance=tolerance, validation_sweep=table)
    clf = ComplexityClassifier(C=best_c).fit(*(a + b for a, b in zip(xy(train), xy(val))))
    meta["trained_on"] = len(xy(train)[0]) + len(xy(val)[0])
    meta["trained_labels"] = {t: sum(r.get("label") == t for r in (*train, *val) if r.get("class") is not None)
                              for t in names}
    meta["calibration"] = clf.calibration_
    return RouterModel.from_classifier(clf, names, mean_costs, cost_unit, class_tier, meta)


@dataclass(frozen=True)
class ComplexityReport:
    """The held-out evaluation: label accuracies, policies, the target sweep (see the module docstring)."""

    tiers: tuple[str, ...]
    cost_unit: str
    n_test: int
    n_labelled: int
    target: float
    label_accuracy: Mapping[str, Mapping[str, float | None]]
    policies: Mapping[str, Outcome]
    curve: tuple[dict[str, float], ...]

    def saving_captured(self, policy: str) -> float | None:
        """Share of the oracle's saving (always-top cost minus oracle cost) that ``policy`` achieves."""
        top, oracle = self.policies[f"always {self.tiers[-1]}"].cost, self.policies["oracle"].cost
        if top - oracle <= 0:
            return None
        return (top - self.policies[policy].cost) / (top - oracle)

    def to_data(self) -> dict[str, Any]:
        return {"tiers": list(self.tiers), "cost_unit": self.cost_unit, "n_test": self.n_test,
                "n_labelled": self.n_labelled, "target": self.target,
                "label_accuracy": {k: dict(v) for k, v in self.label_accuracy.items()},
                "policies": {k: v.to_data() for k, v in self.policies.items()},
                "saving_captured": {k: self.saving_captured(k) for k in self.policies},
                "curve": list(self.curve)}

    def summary_lines(self) -> list[str]:
        lines = [f"test tasks: {self.n_test} ({self.n_labelled} labelled); cost unit: {self.cost_unit}"]
        for name, acc in self.label_accuracy.items():
            exact, tier = ("n/a" if acc[k] is None else f"{acc[k]:.3f}" for k in ("exact", "tier"))
            lines.append(f"label accuracy {name:<14} exact {exact}  tier {tier}")
        for name, o in self.policies.items():
            saved = self.saving_captured(name)
            shown = saved is not None and not name.startswith(("always", "oracle", "random"))
            lines.append(f"{name:<38} accuracy {o.accuracy:.3f}  cost {o.cost:7.3f}"
                         + (f"  oracle saving captured {saved:6.1%}" if shown else ""))
        return lines

    def plot(self, path: str | Path) -> None:
        """All policies and the target sweep on one cost-accuracy plot (PNG)."""
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

        fig = Figure(figsize=(7, 5))
        ax = fig.subplots()
        fixed = [self.policies[f"always {t}"] for t in self.tiers]
        ax.plot([o.cost for o in fixed], [o.accuracy for o in fixed], "s--", color="grey", label="always one tier")
        for t, o in zip(self.tiers, fixed):
            ax.annotate(t, (o.cost, o.accuracy), textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.plot([p["cost"] for p in self.curve], [p["accuracy"] for p in self.curve], "o-", color="tab:blue",
                markersize=3, label="router cost_aware (target sweep)")
        ax.plot([p["random_cost"] for p in self.curve], [p["random_accuracy"] for p in self.curve], ":",
                color="tab:red", label="random @ equal cost (sweep)")
        styles = {"router predicted": ("D", "tab:cyan"), "oracle": ("*", "gold"), "llm baseline": ("^", "tab:green")}
        for name, o in self.policies.items():
            if name in styles:
                marker, color = styles[name]
                ax.plot(o.cost, o.accuracy, marker, color=color, markersize=11, markeredgecolor="black", label=name)
            elif name.startswith("router cost_aware"):
                ax.plot(o.cost, o.accuracy, "o", color="tab:blue", markersize=10, markeredgecolor="black", label=name)
            elif name.startswith("random") and "cost_aware" in name:
                ax.plot(o.cost, o.accuracy, "o", color="tab:red", markersize=8, label=name)
        ax.set_xlabel(f"cost per task ({self.cost_unit})")
        ax.set_ylabel("accuracy (expected over trials)")
        ax.set_title(f"ComplexityNet routing, {self.n_test} test tasks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(self.to_data(), indent=2) + "\n", encoding="utf-8")
        self.plot(out / "curve.png")
        return out / "report.json", out / "curve.png"


def held_out(records: Sequence[Record], model: RouterModel) -> list[Record]:
    """The artefact's held-out tasks found in ``records``; all records when none is (a separate test file)."""
    ids = set(model.meta.get("split", {}).get("test_ids", []))
    held = [r for r in records if str(r["id"]) in ids]
    return held or list(records)


def evaluate_router(records: Sequence[Record], model: RouterModel, target: float | None = None,
             llm_scores: Sequence[float | None] | None = None, sweep: Sequence[float] = SWEEP) -> ComplexityReport:
    """Evaluate ``model`` on ``records`` (already the test split; see ``test_split``).

    ``target`` defaults to the one chosen on validation at training (else 0.8);
    ``llm_scores`` are the untuned baseline's mean 1-5 scores for the same records.
    """
    names = tier_names(records)
    if names != list(model.tiers):
        raise ArtefactError(f"the labels' tiers {names} differ from the router's {list(model.tiers)}")
    target = float(target if target is not None else model.meta.get("target", 0.8))
    n = len(names)
    proba_class = model.class_proba([r["question"] for r in records])
    proba = model.tier_proba([r["question"] for r in records])
    truth = true_tiers(records)
    labelled = [i for i, t in enumerate(truth) if t is not None]
    predicted = decide(proba, "predicted")
    paper_classes = records[0].get("rule") == "paper"

    def accuracy(hits: Sequence[bool]) -> float | None:
        return float(np.mean(hits)) if len(hits) else None

    classes = np.asarray(model.classes)[np.argmax(proba_class, axis=1)]
    label_accuracy = {"router": {
        "exact": accuracy([classes[i] == records[i]["class"] for i in labelled]),
        "tier": accuracy([predicted[i] == truth[i] for i in labelled])}}
    trained = model.meta.get("trained_labels")
    if trained:
        majority = names.index(max(trained, key=lambda t: (trained[t], -names.index(t))))
        label_accuracy["majority label"] = {"exact": None, "tier": accuracy([truth[i] == majority for i in labelled])}
    policies: dict[str, Outcome] = {f"always {t}": outcome(records, [j] * len(records)) for j, t in enumerate(names)}
    policies["router predicted"] = outcome(records, predicted)
    policies["random @ equal cost (predicted)"] = random_at(records, policies["router predicted"].shares)
    aware = f"router cost_aware@{target:g}"
    policies[aware] = outcome(records, decide(proba, "cost_aware", target))
    policies[f"random @ equal cost (cost_aware@{target:g})"] = random_at(records, policies[aware].shares)
    policies["oracle"] = outcome(records, oracle_tiers(records))
    policies["random @ equal cost (oracle)"] = random_at(records, policies["oracle"].shares)
    if llm_scores is not None:
        llm_tiers = [score_to_tier(s, n) for s in llm_scores]
        rounded = [None if s is None else int(np.floor(s + 0.5)) for s in llm_scores]
        label_accuracy["llm baseline"] = {
            "exact": accuracy([rounded[i] == records[i]["class"] for i in labelled]) if paper_classes else None,
            "tier": accuracy([llm_tiers[i] == truth[i] for i in labelled])}
        policies["llm baseline"] = outcome(records, llm_tiers)
    curve = []
    for t in sorted(set(sweep) | {target}):
        o = outcome(records, decide(proba, "cost_aware", t))
        r = random_at(records, o.shares)
        curve.append({"target": float(t), "accuracy": o.accuracy, "cost": o.cost, "random_accuracy": r.accuracy,
                      "random_cost": r.cost})
    return ComplexityReport(tuple(names), model.cost_unit, len(records), len(labelled), target, label_accuracy,
                            policies, tuple(curve))
