"""Labelling: run every tier T times per task, count successes, label the cheapest tier that suffices.

Bae et al., "ComplexityNet" (arXiv 2312.11511): each task is run 5 times on each of three
models and its complexity label comes from the pass counts. llmnet runs whole tiers
(subgraphs) through the executor and its per-sample cache, trial t drawing its own seeds
(``Tiers.network_for``), and offers two rules:

* ``threshold`` (default): the label is the cheapest tier with at least ``threshold``
  successes out of ``trials``; the classes are the tiers (class k = tier k, from 1).
* ``paper``: Bae et al.'s rule over three tiers' pass counts out of 5 (``paper_class``),
  giving classes 1..5 collapsed to tiers {1,2} -> 1, {3,4} -> 2, {5} -> 3.

A task is *unsolved* when the rule finds no tier (threshold: none clears it; paper: all
three counts are 0, the tasks the paper drops). ``unsolved`` says what happens to them:
``drop`` (kept in the file with ``label: null``, so evaluation still routes them, but
never trained on), ``top`` (labelled the top tier) or ``best`` (labelled the cheapest tier
with the most successes: when nothing reliably solves a task, spending more buys
nothing, so the router should learn to send it cheap).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmnet.complexity.tiers import Tiers
from llmnet.errors import ArtefactError, DatasetError, LlmnetError, Problem, SpecError
from llmnet.execute import SampleCache
from llmnet.execute.engine import Engine
from llmnet.tasks.query import Query

RULES = ("threshold", "paper")
UNSOLVED = ("drop", "top", "best")
PAPER_TIER = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
"""The paper's collapse of labels 1..5 onto its three tiers (0-based)."""


def paper_class(l: int, g3: int, g4: int) -> int:
    """Bae et al.'s label from pass counts out of 5 (L = cheapest tier, g3 = middle, g4 = top)."""
    if l + g3 >= 7 or l == 5:
        return 1
    if g3 == 5:
        return 2
    if g4 == 5:
        return 3
    if g4 >= 2 or g3 == 2:
        return 4
    return 5


def assign_label(counts: Sequence[int], rule: str = "threshold", threshold: int = 4,
                 unsolved: str = "drop") -> tuple[int | None, int | None, bool]:
    """(class, tier index, unsolved?) for one task's success counts per tier, cheapest first."""
    n = len(counts)
    best = max(range(n), key=lambda j: (counts[j], -j))
    if rule == "paper":
        if n != 3:
            raise SpecError(Problem("--rule", "", f"the paper's rule needs exactly 3 tiers, got {n}"))
        if not any(counts):
            cls = {"drop": None, "top": 5, "best": 1}[unsolved]
            return cls, None if cls is None else PAPER_TIER[cls], True
        cls = paper_class(*counts)
        return cls, PAPER_TIER[cls], False
    solved = [j for j, c in enumerate(counts) if c >= threshold]
    if solved:
        return solved[0] + 1, solved[0], False
    tier = {"drop": None, "top": n - 1, "best": best}[unsolved]
    return None if tier is None else tier + 1, tier, True


@dataclass(frozen=True)
class LabelSet:
    """The labelled tasks (one record each, unsolved ones included) and how they were labelled."""

    records: tuple[dict[str, Any], ...]
    tiers: tuple[str, ...]
    rule: str
    threshold: int
    unsolved: str
    trials: int

    def distribution(self) -> dict[str, int]:
        """Tasks per label (tier name), in tier order, plus ``unsolved`` (however they were handled)."""
        counts = Counter(r["label"] for r in self.records)
        out = {t: counts.get(t, 0) for t in self.tiers}
        out["unsolved"] = sum(r["unsolved"] for r in self.records)
        return out

    def class_distribution(self) -> dict[int, int]:
        return dict(sorted(Counter(r["class"] for r in self.records if r["class"] is not None).items()))

    def summary_lines(self) -> list[str]:
        d = self.distribution()
        what = "dropped" if self.unsolved == "drop" else f"labelled {self.unsolved}"
        lines = [f"{len(self.records)} tasks, {self.trials} trials per tier, rule {self.rule}"
                 + (f" (>= {self.threshold} of {self.trials})" if self.rule == "threshold" else ""),
                 "labels: " + "  ".join(f"{t}: {d[t]}" for t in self.tiers)
                 + f"  unsolved: {d['unsolved']} ({what})"]
        if self.rule == "paper":
            lines.append("classes: " + "  ".join(f"{k}: {v}" for k, v in self.class_distribution().items()))
        return lines

    def write_jsonl(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records), encoding="utf-8")


def label_tasks(tiers: Tiers, queries: Sequence[Query], trials: int = 5, rule: str = "threshold",
                threshold: int = 4, unsolved: str = "drop", cache_path: str | Path | None = None,
                concurrency: int = 8, backends: dict[str, Any] | None = None,
                progress: Callable[[int, int], None] | None = None, ray: Any = None) -> LabelSet:
    """Run every tier ``trials`` times on every query and label each (see the module docstring).

    Each query runs all its tier trials one after another (so a local model keeps the
    prompt's prefix in its KV cache); ``concurrency`` queries run at once. All runs share
    one set of backends and limits and the sample cache at ``cache_path``. ``ray``: run the
    queries on Ray workers instead (an address, "local" or ``RayOptions``; see
    ``llmnet.execute.cluster``), with the same labels.
    """
    problems = [Problem(option, "", message) for option, bad, message in [
        ("--trials", trials < 1, "must be at least 1"),
        ("--rule", rule not in RULES, f"unknown rule '{rule}' (known: {', '.join(RULES)})"),
        ("--unsolved", unsolved not in UNSOLVED, f"unknown choice '{unsolved}' (known: {', '.join(UNSOLVED)})"),
        ("--threshold", rule == "threshold" and not 1 <= threshold <= trials,
         f"must be between 1 and --trials ({trials}), got {threshold}"),
        ("--rule", rule == "paper" and (len(tiers.tiers) != 3 or trials != 5),
         f"the paper's rule needs 3 tiers and 5 trials (have {len(tiers.tiers)} tiers, {trials} trials)"),
    ] if bad]
    if problems:
        raise SpecError(problems)
    runs = asyncio.run(_run_trials(tiers, list(queries), trials, cache_path, concurrency, backends, progress, ray))
    rule_name = "paper" if rule == "paper" else f"threshold:{threshold}"
    records = []
    for q in queries:
        per_tier = runs[q.id]
        counts = [sum(bool(r["correct"]) for r in recs) for recs in per_tier]
        cls, tier, is_unsolved = assign_label(counts, rule, threshold, unsolved)
        cost = [t.cost if t.cost is not None else sum(r["samples"] for r in recs) / trials
                for t, recs in zip(tiers.tiers, per_tier)]
        records.append({
            "id": q.id, "question": q.question, "answer": q.answer, "difficulty": q.difficulty,
            "trials": trials, "counts": dict(zip(tiers.names, counts)), "cost": dict(zip(tiers.names, cost)),
            "cost_unit": tiers.cost_unit,
            "errors": sum(r["error"] is not None for recs in per_tier for r in recs),
            "rule": rule_name, "class": cls, "label": None if tier is None else tiers.names[tier],
            "unsolved": is_unsolved,
        })
    return LabelSet(tuple(records), tuple(tiers.names), rule, threshold, unsolved, trials)


async def _run_trials(tiers: Tiers, queries: list[Query], trials: int, cache_path: str | Path | None,
                      concurrency: int, backends: dict[str, Any] | None,
                      progress: Callable[[int, int], None] | None,
                      ray: Any = None) -> dict[str, list[list[dict[str, Any]]]]:
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise DatasetError("task ids must be unique")
    cache = SampleCache(cache_path) if cache_path and ray is None else None  # on Ray the driver's actor has it
    if ray is not None:
        shared, engines = _ray_engines(tiers, trials, cache_path, backends, ray)
    else:
        shared = Engine(tiers.network, cache, backends=backends)
        engines = []
        for j in range(len(tiers.tiers)):
            row = []
            for t in range(trials):
                engine = Engine(tiers.network_for(j, t), cache,
                                backends={k: v.backend for k, v in shared.models.items()})
                engine.share(shared)  # one set of backends, limits and cache writes for every tier-trial run
                row.append(engine)
            engines.append(row)
    out: dict[str, list[list[dict[str, Any]]]] = {}
    it = iter(queries)

    async def worker() -> None:
        for q in it:
            out[q.id] = [[await e.run_query(q) for e in row] for row in engines]
            if progress:
                progress(len(out), len(queries))

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(queries))))))
    finally:
        await shared.aclose()
        if cache is not None:
            cache.close()
    return out


def _ray_engines(tiers: Tiers, trials: int, cache_path: str | Path | None, backends: dict[str, Any] | None,
                 ray: Any) -> tuple[Any, list[list[Any]]]:
    """One Ray engine over every tier-trial network, and a handle per (tier, trial) to run queries on."""
    from llmnet.execute.cluster import RayEngine, options_of

    if backends:
        raise LlmnetError("backends= cannot be shipped to Ray workers: give the models in the tiers file")
    nets = [tiers.network_for(j, t) for j in range(len(tiers.tiers)) for t in range(trials)]
    shared = RayEngine(tiers.network, options_of(ray), cache_path, None, 0, networks=nets)
    return shared, [[shared.view(j * trials + t) for t in range(trials)] for j in range(len(tiers.tiers))]


REQUIRED = {"id": str, "question": str, "trials": int, "counts": dict, "cost": dict, "unsolved": bool}


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """The records of a labels JSONL written by ``llmnet complexity label`` (checked line by line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtefactError(f"{path}: cannot read labels: {getattr(exc, 'strerror', None) or exc}") from None
    records: list[dict[str, Any]] = []
    tiers: list[str] | None = None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ArtefactError(f"{where}: invalid JSON ({exc.msg}); expected a record from 'llmnet complexity "
                                f"label'") from None
        if not isinstance(rec, dict):
            raise ArtefactError(f"{where}: expected a JSON object")
        for key, typ in REQUIRED.items():
            if not isinstance(rec.get(key), typ):
                raise ArtefactError(f"{where}: field '{key}' missing or not a {typ.__name__}; is this a labels file "
                                    f"from 'llmnet complexity label'?")
        names = list(rec["counts"])
        if tiers is None:
            tiers = names
        for field_name in ("counts", "cost"):
            keys = list(rec[field_name])
            if keys != tiers:
                what = (f"lists the tiers in another order ({keys}) than the first record's counts ({tiers}); "
                        f"tiers are ordered cheapest first" if sorted(keys) == sorted(tiers)
                        else f"has tiers {keys}, the first record's counts {tiers}")
                raise ArtefactError(f"{where}: '{field_name}' {what}")
        if rec.get("label") is not None and rec["label"] not in tiers:
            raise ArtefactError(f"{where}: label '{rec['label']}' is not a tier ({', '.join(tiers)})")
        records.append(rec)
    if not records:
        raise ArtefactError(f"{path}: no label records")
    return records
