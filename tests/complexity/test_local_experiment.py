"""The local experiment's own arithmetic: both label rules from one set of pass counts, tier separation."""

import importlib.util

import numpy as np

from llmnet.complexity.label import PAPER_TIER, paper_class
from llmnet.complexity.tiers import load_tiers
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("complexitynet_local", ROOT / "experiments" / "complexitynet_local.py")
exp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exp)

NAMES = ("single", "vote3", "vote5")


def rec(i, counts):
    return {"id": f"t{i}", "question": f"{i} + 1", "trials": 5, "counts": dict(zip(NAMES, counts)),
            "cost": {"single": 1.0, "vote3": 3.0, "vote5": 5.0}, "cost_unit": "calls", "class": None, "label": None,
            "unsolved": False}


def test_relabel_gives_the_papers_class_and_the_threshold_label_from_the_same_counts():
    counts = [(5, 5, 5), (1, 5, 5), (0, 2, 5), (0, 0, 3), (0, 0, 0), (4, 0, 0), (2, 2, 2)]
    records = [rec(i, c) for i, c in enumerate(counts)]
    paper = exp.relabel(records, "paper", 4)
    for r, c in zip(paper, counts):
        expected = paper_class(*c) if any(c) else 1  # never solved: class 1 (the cheapest tier does as well)
        assert r["class"] == expected and r["label"] == NAMES[PAPER_TIER[expected]]
        assert r["unsolved"] == (not any(c)) and r["rule"] == "paper"
    threshold = exp.relabel(records, "threshold", 4)
    assert [r["label"] for r in threshold] == ["single", "vote3", "vote5", "vote5", "single", "single", "single"]
    assert [r["unsolved"] for r in threshold] == [False, False, False, True, True, False, True]
    assert records[0]["label"] is None  # the input is not modified


def test_tier_separation_reports_paired_gaps_with_intervals():
    rng = np.random.default_rng(0)
    records = [rec(i, (int(rng.integers(0, 2)), int(rng.integers(1, 4)), 5)) for i in range(200)]
    sep = exp.tier_separation(records)
    assert set(sep["tiers"]) == set(NAMES)
    for t, j in zip(NAMES, range(3)):
        mean = np.mean([list(r["counts"].values())[j] / 5 for r in records])
        v = sep["tiers"][t]
        assert v["value"] == mean and v["low"] <= mean <= v["high"]
    gap = sep["gaps"]["vote5 - vote3"]
    assert gap["value"] > 0.5 and gap["interval_excludes_0"] and gap["wider_than_both_tier_intervals"]
    same = exp.tier_separation([rec(i, (2, 2, 2)) for i in range(20)])
    assert not same["gaps"]["vote3 - single"]["interval_excludes_0"]


def test_the_ladder_file_is_cheapest_first_and_the_smoke_ladder_keeps_its_shape():
    tiers = load_tiers(ROOT / "graphs" / "tiers_ladder.yaml")
    assert tiers.names == list(NAMES) and tiers.cost_unit == "calls"
    smoke = exp.smoke_tiers()
    assert smoke.names == tiers.names
    assert {m.backend for m in smoke.network.spec.models.values()} == {"simulated"}
