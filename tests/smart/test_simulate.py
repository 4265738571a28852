import numpy as np
import pytest

from llmnet.smart.session import Candidate, SmartPlan, SmartSession
from llmnet.smart.simulate import applied_agreement, profile_items


def _session(**kw):
    return SmartSession(300, Candidate("ref", 1.0), [Candidate("a", 0.1), Candidate("b", 0.2)], delta=0.1, **kw)


def test_profile_items_reads_the_table_in_item_order():
    rng = np.random.default_rng(3)
    items = {"a": rng.random(300) < 0.95, "b": rng.random(300) < 0.5}
    s = _session()
    profile_items(s, items)
    manual = _session()
    while manual.profiling:
        start, k = manual.profiled, manual.batch_limit()
        manual.observe({m: items[m][start:start + k] for m in manual.to_run()[:-1]})
    assert s.profiled == manual.profiled
    assert s.plan().counts == manual.plan().counts
    # the counts behind the decisions are the table's own
    rows = [c for c in s.result().history if c.name == "a"]
    assert rows[-1].agreements == int(items["a"][: rows[-1].trials].sum())


def test_applied_agreement_counts_each_block_on_its_own_items():
    # 10 items: 4 profiled (the reference's own outputs), "a" answers items 4-6, the reference 7-9
    plan = SmartPlan("mix", 10, 4, "ref", 0.9, {"a": 3, "ref": 3}, (("a", 4, 7), ("ref", 7, 10)),
                     {"a": 0.5, "ref": 1.0}, {"a": 0.95, "ref": 1.0}, 0.0)
    items = {"a": np.array([0, 0, 0, 0, 1, 0, 1, 0, 0, 0], bool)}  # profiled and reference items are ignored
    assert applied_agreement(plan, items) == pytest.approx((4 + 2 + 3) / 10)
