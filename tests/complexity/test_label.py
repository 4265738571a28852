"""Labelling: the paper's rule table, the threshold rule, and tier runs on simulated models."""

import pytest

from llmnet.complexity.label import PAPER_TIER, assign_label, label_tasks, paper_class, read_labels
from llmnet.complexity.tiers import load_tiers, shift_seeds
from llmnet.errors import ArtefactError, SpecError
from llmnet.execute import SampleCache
from llmnet.tasks.datasets import load_dataset

from . import SIM_TIERS, write_tiers

# (L, g3, g4) pass counts out of 5 -> Bae et al.'s label
PAPER_TABLE = [
    ((5, 0, 0), 1), ((2, 5, 0), 1), ((4, 3, 1), 1), ((3, 4, 0), 1),   # L == 5 or L + g3 >= 7
    ((1, 5, 0), 2), ((0, 5, 5), 2),                                     # else g3 == 5
    ((3, 3, 5), 3), ((0, 4, 5), 3),                                     # else g4 == 5
    ((0, 0, 2), 4), ((0, 2, 0), 4), ((1, 2, 1), 4), ((2, 1, 4), 4),     # else g4 >= 2 or g3 == 2
    ((0, 3, 1), 5), ((0, 1, 1), 5), ((4, 0, 1), 5), ((0, 0, 0), 5),     # else
]


@pytest.mark.parametrize(("counts", "label"), PAPER_TABLE)
def test_paper_rule_table(counts, label):
    assert paper_class(*counts) == label


def test_paper_rule_collapse_and_drop():
    assert PAPER_TIER == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
    assert assign_label((2, 5, 0), "paper") == (1, 0, False)
    assert assign_label((0, 0, 2), "paper") == (4, 1, False)
    assert assign_label((0, 3, 1), "paper") == (5, 2, False)
    # problems all three tiers fail are the ones the paper drops
    assert assign_label((0, 0, 0), "paper", unsolved="drop") == (None, None, True)
    assert assign_label((0, 0, 0), "paper", unsolved="top") == (5, 2, True)
    assert assign_label((0, 0, 0), "paper", unsolved="best") == (1, 0, True)
    with pytest.raises(SpecError):
        assign_label((1, 2), "paper")


def test_threshold_rule_and_unsolved_options():
    assert assign_label((5, 5, 5)) == (1, 0, False)
    assert assign_label((3, 4, 5)) == (2, 1, False)
    assert assign_label((3, 3, 4), threshold=3) == (1, 0, False)
    assert assign_label((1, 3, 2), unsolved="drop") == (None, None, True)
    assert assign_label((1, 3, 2), unsolved="top") == (3, 2, True)
    assert assign_label((1, 3, 3), unsolved="best") == (2, 1, True)   # most successes, cheapest on ties
    assert assign_label((0, 0, 0), unsolved="best") == (1, 0, True)


def test_trials_draw_fresh_seeds_but_greedy_calls_repeat(tmp_path):
    tiers = load_tiers(write_tiers(tmp_path))
    for trial in range(3):
        assert tiers.network_for("one", trial).spec.nodes["g"].seed == trial
        vote = tiers.network_for("vote5", trial).spec.nodes
        assert vote["g"].seed == 5 * trial and vote["v"].seed == trial
    greedy = {"g": tiers.network.spec.subgraphs["one"].nodes["g"].model_copy(update={"temperature": 0})}
    assert shift_seeds(greedy, 4)["g"].seed == 0


def test_labelling_on_simulated_tiers(tmp_path):
    tiers = load_tiers(write_tiers(tmp_path))
    assert tiers.names == ["one", "vote5", "top"] and [t.cost for t in tiers.tiers] == [1, 5, 20]
    queries = load_dataset("arithmetic:n=40,digits=1-4")
    labels = label_tasks(tiers, queries, trials=5, threshold=4, unsolved="top", cache_path=tmp_path / "c.sqlite")
    records = labels.records
    assert len(records) == 40 and all(r["trials"] == 5 for r in records)
    assert all(r["cost"] == {"one": 1, "vote5": 5, "top": 20} and r["cost_unit"] == "weak-calls" for r in records)
    # independent trials: a single sampled call succeeds on some but not all trials of some tasks
    assert any(0 < r["counts"]["one"] < 5 for r in records)
    # easy sums get cheap labels, hard ones expensive labels
    easy = [r for r in records if r["difficulty"] == 1]
    hard = [r for r in records if r["difficulty"] == 4]
    assert sum(r["label"] == "one" for r in easy) > sum(r["label"] == "one" for r in hard)
    assert sum(r["label"] == "top" for r in hard) > sum(r["label"] == "top" for r in easy)
    # the single call and the vote share the weak model's samples: 25 + 5 per task, not 30 + 5
    cache = SampleCache(tmp_path / "c.sqlite")
    assert len(cache) == 40 * (25 + 5)
    cache.close()
    dist = labels.distribution()
    assert sum(dist[t] for t in tiers.names) == 40
    assert dist["unsolved"] == sum(r["unsolved"] for r in records)
    labels.write_jsonl(tmp_path / "labels.jsonl")
    assert read_labels(tmp_path / "labels.jsonl") == list(records)


def test_measured_costs_and_drop(tmp_path):
    text = SIM_TIERS.replace("params: {cost_unit: weak-calls, cost_one: 1, cost_vote5: 5, cost_top: 20}\n", "")
    tiers = load_tiers(write_tiers(tmp_path, text))
    assert [t.cost for t in tiers.tiers] == [None, None, None] and tiers.cost_unit == "calls"
    labels = label_tasks(tiers, load_dataset("arithmetic:n=12,digits=3-5"), unsolved="drop")
    assert all(r["cost"] == {"one": 1, "vote5": 5, "top": 1} for r in labels.records)
    dropped = [r for r in labels.records if r["unsolved"]]
    assert dropped and all(r["label"] is None and r["class"] is None for r in dropped)
    assert "dropped" in labels.summary_lines()[1]


def test_bad_options_and_tiers_files(tmp_path):
    tiers = load_tiers(write_tiers(tmp_path))
    queries = load_dataset("arithmetic:n=2")
    for kwargs in ({"trials": 0}, {"rule": "median"}, {"unsolved": "maybe"}, {"threshold": 6},
                   {"rule": "paper", "trials": 3}):
        with pytest.raises(SpecError):
            label_tasks(tiers, queries, **kwargs)
    broken = {
        "cost_one: 1, ": "declare a cost for every tier",
        "cost_top: 20": "cheapest first",
        "cost_unit: weak-calls, cost_one: 1, cost_vote5: 5, cost_top: 20": "only 'calls' can be measured",
    }
    replacement = {"cost_one: 1, ": "", "cost_top: 20": "cost_top: 2",
                   "cost_unit: weak-calls, cost_one: 1, cost_vote5: 5, cost_top: 20": "cost_unit: usd"}
    for old, message in broken.items():
        path = write_tiers(tmp_path, SIM_TIERS.replace(old, replacement[old]), "bad.yaml")
        with pytest.raises(SpecError, match=message):
            load_tiers(path)
    not_gate = write_tiers(tmp_path, "models: {m: {backend: simulated, model: s}}\n"
                                     "nodes:\n  g: {kind: generator, model: m}\n", "plain.yaml")
    with pytest.raises(SpecError, match="not a gate"):
        load_tiers(not_gate)


def test_read_labels_rejects_bad_lines(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "a", "question": "1 + 1"}\n')
    with pytest.raises(ArtefactError, match=r"labels.jsonl:1: field 'trials'"):
        read_labels(path)
    path.write_text("not json\n")
    with pytest.raises(ArtefactError, match="invalid JSON"):
        read_labels(path)
    with pytest.raises(ArtefactError, match="cannot read"):
        read_labels(tmp_path / "missing.jsonl")
