"""Splits, training with validation, held-out evaluation and cross-validation of a ComplexityNet router.

End-to-end numbers come from the labelling runs, not from new model calls: a label
record holds, for every tier, its successes over T independent trials and its cost on
that task, so every policy is scored exactly on the same draws (``llmnet.complexity.report``:
the majority baseline, random routing at equal cost and the oracle beside every router,
with bootstrap intervals and verdicts).

Policies: ``always <tier>``; ``majority tier`` (the training split's most common label);
``router predicted`` (the paper's rule); ``router cost_aware@t`` (P(label <= j) >= t; its
target is a probability about the label, see ``llmnet.complexity.router``); ``router
success@t`` for several targets (the per-tier success models: the cheapest tier with
predicted P(solves) >= t, so t is an expected success rate and its realised success is
printed beside it); ``router budget=success@t`` (beyond the paper: argmax_t p_t(x) - lambda c_t with lambda
bisected on the training tasks so the mean cost matches what ``success@t`` spends there;
``budget_rows``) and ``router budget@B`` for budgets B asked for (mean cost per task);
``llm baseline`` (optional: the untuned LLM's 1-5 score on tiers).

Splits: seeded stratified fractions (``split_records``), a fixed split from a JSON file
(``read_split``: ``{"train": [ids], "validation": [ids], "test": [ids]}``), or repeated
stratified K-fold cross-validation (``cross_validate``), where each fold trains a router
on the other folds (validation carved out of them) and every task is scored once per
repeat by a router that never saw it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.complexity.classifier import ComplexityClassifier, RouterModel, score_to_tier, select_c
from llmnet.complexity.report import ComplexityReport, Routing, build_report, costs, success
from llmnet.complexity.router import decide, decide_budget, fit_lambda
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


def outcome(records: Sequence[Record], tiers: Sequence[int]) -> tuple[float, float]:
    """Mean expected accuracy and cost of sending task i to ``tiers[i]``."""
    rows, idx = np.arange(len(records)), np.asarray(tiers, dtype=int)
    return float(success(records)[rows, idx].mean()), float(costs(records)[rows, idx].mean())


def read_split(path: str | Path, records: Sequence[Record]) -> tuple[list[Record], list[Record], list[Record]]:
    """Train / validation / test records named by a JSON split file (module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{path}: cannot read split file: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or set(data) - {"train", "validation", "test"} or "train" not in data or \
            not all(isinstance(v, list) for v in data.values()):
        raise ArtefactError(f"{path}: a split file is a JSON object {{\"train\": [ids], \"validation\": [ids], "
                            f"\"test\": [ids]}} (validation and test optional)")
    by_id = {str(r["id"]): r for r in records}
    parts, seen = [], set()
    for part in ("train", "validation", "test"):
        ids = [str(i) for i in data.get(part, [])]
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ArtefactError(f"{path}: {part} id '{unknown[0]}' is not in the labels ({len(unknown)} unknown)")
        twice = seen & set(ids)
        if twice:
            raise ArtefactError(f"{path}: id '{sorted(twice)[0]}' is in more than one part of the split")
        seen |= set(ids)
        parts.append([by_id[i] for i in ids])
    return parts[0], parts[1], parts[2]


def choose_target(records: Sequence[Record], model: RouterModel, tolerance: float = 0.01,
                  grid: Sequence[float] = SWEEP) -> tuple[float, list[dict[str, float]]]:
    """The cheapest cost-aware target within ``tolerance`` of always-top's accuracy on ``records``.

    Without one, the target of highest accuracy (cheaper on ties). Returns it and the sweep.
    """
    proba = model.tier_proba([r["question"] for r in records])
    top_accuracy, _ = outcome(records, [len(model.tiers) - 1] * len(records))
    table = []
    for t in grid:
        accuracy, cost = outcome(records, decide(proba, "cost_aware", t))
        table.append({"target": float(t), "accuracy": accuracy, "cost": cost})
    good = [row for row in table if row["accuracy"] >= top_accuracy - tolerance - 1e-12]
    if good:
        best = min(good, key=lambda row: (row["cost"], -row["accuracy"]))
    else:
        best = max(table, key=lambda row: (row["accuracy"], -row["cost"]))
    return best["target"], table


def train_router(records: Sequence[Record], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                 tolerance: float = 0.01, split: tuple[Sequence[Record], Sequence[Record], Sequence[Record]] | None = None,
                 features: str = "tfidf") -> RouterModel:
    """Split, choose C (validation log loss) and the cost-aware target (validation), refit, return the artefact.

    ``split``: a fixed (train, validation, test) split instead of ``fractions``. The target
    is chosen with the model fitted on the training split only, so the validation tasks are
    unseen when it is picked; the returned model is refitted on training + validation, with
    its per-tier success models (``ComplexityClassifier.fit_success``). The test ids are
    kept in ``meta.split`` for ``evaluate``. ``features``: ``tfidf``, ``embedding`` (a local
    LM's embeddings, ``llmnet.complexity.embed``) or ``both``.
    """
    names = list(records[0]["counts"])
    train, val, test = split if split is not None else split_records(records, fractions, seed)
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
    best_c, losses = select_c(xy(train), xy(val), features=features)
    how = {"file": True} if split is not None else {"fractions": list(fractions), "seed": seed}
    meta: dict[str, Any] = {"features": features, "rule": records[0].get("rule"), "trials": records[0]["trials"], "C": best_c,
                            "validation_log_loss": {str(k): v for k, v in losses.items()},
                            "split": {**how, "train": len(train), "validation": len(val),
                                      "test_ids": [str(r["id"]) for r in test]}}
    if val:
        first = RouterModel.from_classifier(ComplexityClassifier(C=best_c, features=features).fit(*xy(train)), names, mean_costs,
                                            cost_unit, class_tier)
        target, table = choose_target(val, first, tolerance)
        meta.update(target=target, target_tolerance=tolerance, validation_sweep=table)
    seen = [*train, *val]
    clf = ComplexityClassifier(C=best_c, features=features).fit(*(a + b for a, b in zip(xy(train), xy(val))))
    clf.fit_success([r["question"] for r in seen], [list(r["counts"].values()) for r in seen], int(seen[0]["trials"]))
    meta["trained_on"] = len(xy(train)[0]) + len(xy(val)[0])
    meta["trained_labels"] = {t: sum(r.get("label") == t for r in seen if r.get("class") is not None) for t in names}
    meta["calibration"] = clf.calibration_
    # the success models' predictions on the tasks they were fitted on: the budget rule's lambda is
    # bisected on these (``budget_rows``), never on the tasks it is evaluated on
    meta["budget_calibration"] = np.round(clf.success_proba([r["question"] for r in seen]), 6).tolist()
    return RouterModel.from_classifier(clf, names, mean_costs, cost_unit, class_tier, meta)


def held_out(records: Sequence[Record], model: RouterModel) -> list[Record]:
    """The artefact's held-out tasks found in ``records``; all records when none is (a separate test file)."""
    ids = set(model.meta.get("split", {}).get("test_ids", []))
    held = [r for r in records if str(r["id"]) in ids]
    return held or list(records)


SUCCESS_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)


def majority_tier(model: RouterModel) -> int:
    """The tier most often the label on the router's training tasks (ties: the cheaper)."""
    trained = model.meta.get("trained_labels")
    if not trained:
        raise ArtefactError("the router artefact has no training label counts (meta.trained_labels); retrain it")
    names = list(model.tiers)
    return names.index(max(trained, key=lambda t: (trained[t], -names.index(t))))


def budget_rows(model: RouterModel, p_success: np.ndarray, success_targets: Sequence[float] = SUCCESS_TARGETS,
                budgets: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """The ``budget`` rule's rows (``llmnet.complexity.router.decide_budget``) for tasks with ``p_success``.

    Budgets are mean cost per task in the router's cost unit, with the router's per-tier
    costs. Rows ``router budget=success@t``: the budget is the mean cost the ``success@t``
    rule spends on the router's own training + validation tasks, so the two rules are
    compared at (about) equal cost; rows ``router budget@B``: the budgets asked for. Each
    lambda is bisected (``fit_lambda``) on the training + validation tasks' predicted
    success (``meta.budget_calibration``), never on the evaluated tasks; read each row's
    realised cost in the report. Empty for an artefact without success models or
    calibration (trained before the rule existed) or with tier costs not increasing, unless
    ``budgets`` are asked for (then raises).
    """
    calibration = model.meta.get("budget_calibration")
    if not budgets and not np.all(np.diff(np.asarray(model.costs, dtype=float)) > 0):
        return {}  # tiers not strictly cheaper-first in cost: fit_lambda would refuse; asked-for budgets raise
    if model.success is None or not calibration:
        if budgets:
            raise ArtefactError("the budget rule needs the router's success models and meta.budget_calibration; "
                                "retrain the router with 'llmnet complexity train'")
        return {}
    p_cal, tier_costs = np.asarray(calibration, dtype=float), np.asarray(model.costs, dtype=float)
    rows = {}
    for t in success_targets:
        spent = float(tier_costs[decide(p_cal, "success", t)].mean())
        lam, _ = fit_lambda(p_cal, tier_costs, spent)
        rows[f"router budget=success@{t:g}"] = decide_budget(p_success, tier_costs, lam)
    for b in budgets:
        lam, _ = fit_lambda(p_cal, tier_costs, float(b))
        rows[f"router budget@{b:g}"] = decide_budget(p_success, tier_costs, lam)
    return rows


def route(records: Sequence[Record], model: RouterModel, target: float | None = None,
          success_targets: Sequence[float] = SUCCESS_TARGETS, llm_scores: Sequence[float | None] | None = None,
          sweep: Sequence[float] = SWEEP, budgets: Sequence[float] = ()) -> Routing:
    """Every policy's tier per task for ``model`` on ``records`` (module docstring)."""
    names = list(records[0]["counts"])
    if names != list(model.tiers):
        raise ArtefactError(f"the labels' tiers {names} differ from the router's {list(model.tiers)}")
    target = float(target if target is not None else model.meta.get("target", 0.8))
    texts = [r["question"] for r in records]
    proba = model.tier_proba(texts)
    policies = {"router predicted": decide(proba, "predicted"),
                f"router cost_aware@{target:g}": decide(proba, "cost_aware", target)}
    targets = {}
    if model.success is not None:
        p_success = model.success_proba(texts)
        for t in success_targets:
            targets[f"router success@{t:g}"] = float(t)
            policies[f"router success@{t:g}"] = decide(p_success, "success", t)
        policies.update(budget_rows(model, p_success, success_targets, budgets))
    elif budgets:
        raise ArtefactError("the budget rule needs the router's success models; retrain the router with "
                            "'llmnet complexity train'")
    classes = np.asarray(model.classes)[np.argmax(model.class_proba(texts), axis=1)]
    llm = llm_class = None
    if llm_scores is not None:
        llm = np.array([score_to_tier(x, len(names)) for x in llm_scores])
        llm_class = np.array([-2 if x is None else int(np.floor(x + 0.5)) for x in llm_scores])
    return Routing(policies, tuple(policies), classes, np.full(len(records), majority_tier(model)), targets,
                   {float(t): decide(proba, "cost_aware", t) for t in sorted(set(sweep) | {target})}, llm, llm_class)


def evaluate_router(records: Sequence[Record], model: RouterModel, target: float | None = None,
                    llm_scores: Sequence[float | None] | None = None, sweep: Sequence[float] = SWEEP,
                    success_targets: Sequence[float] = SUCCESS_TARGETS, evaluation: str = "held-out tasks",
                    budgets: Sequence[float] = ()) -> ComplexityReport:
    """Evaluate ``model`` on ``records`` (already the test split; see ``held_out``).

    ``target`` defaults to the one chosen on validation at training (else 0.8);
    ``llm_scores`` are the untuned baseline's mean 1-5 scores for the same records.
    """
    routing = route(records, model, target, success_targets, llm_scores, sweep, budgets)
    target = float(target if target is not None else model.meta.get("target", 0.8))
    return build_report(records, routing, model.cost_unit, evaluation, target)


def cross_validate(records: Sequence[Record], folds: int = 5, repeats: int = 1, seed: int = 0,
                   tolerance: float = 0.01, success_targets: Sequence[float] = SUCCESS_TARGETS,
                   progress: Callable[[int, int], None] | None = None, features: str = "tfidf",
                   budgets: Sequence[float] = ()) -> ComplexityReport:
    """Repeated stratified K-fold cross-validation (module docstring); one report over every task.

    Each fold's router is trained by ``train_router`` on the other folds, split 75/25 into
    training and validation (C and the cost-aware target chosen there). With ``repeats`` > 1
    every task is scored once per repeat: the report pools the repeats (tasks x repeats
    rows), so its intervals are for this procedure, not for one router.
    """
    if folds < 2:
        raise ArtefactError(f"--folds must be at least 2, got {folds}")
    if repeats < 1:
        raise ArtefactError(f"--repeats must be at least 1, got {repeats}")
    pooled_records: list[Record] = []
    parts: list[Routing] = []
    done, total = 0, folds * repeats
    for rep in range(repeats):
        groups: dict[str, list[int]] = {}
        for i, r in sorted(enumerate(records), key=lambda ir: str(ir[1]["id"])):
            groups.setdefault(str(r.get("label")), []).append(i)
        rng = random.Random(seed * 1000 + rep)
        fold_of = np.zeros(len(records), dtype=int)
        offset = 0
        for key in sorted(groups):
            members = groups[key]
            rng.shuffle(members)
            for k, i in enumerate(members):
                fold_of[i] = (offset + k) % folds
            offset += len(members)
        for f in range(folds):
            test_idx = np.flatnonzero(fold_of == f)
            rest = [records[i] for i in np.flatnonzero(fold_of != f)]
            train, val, _ = split_records(rest, (0.75, 0.25, 0.0), seed + rep * folds + f)
            model = train_router(rest, tolerance=tolerance, split=(train, val, []), features=features)
            part = [records[i] for i in test_idx]
            routed = route(part, model, None, success_targets, budgets=budgets)
            key = "router cost_aware (target from validation)"
            policies = {key if k.startswith("router cost_aware@") else k: v for k, v in routed.policies.items()}
            parts.append(Routing(policies, tuple(policies), routed.predicted_class, routed.majority,
                                 routed.success_targets, {t: v for t, v in routed.sweep.items() if t in SWEEP}))
            pooled_records.extend(part)
            done += 1
            if progress:
                progress(done, total)
    how = f"{folds}-fold cross-validation" + (f" x {repeats} repeats" if repeats > 1 else "") + f", {features}"
    return build_report(pooled_records, Routing.concat(parts), str(records[0].get("cost_unit", "calls")), how)
