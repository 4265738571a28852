"""Faults between llmnet and a real server: every run finishes with the fault-free answers.

A Vote-3 network over 4 arithmetic queries talks to ``llama_cpp.server`` through
:mod:`fault_proxy`, which injects 429s, 5xx bursts, a response slower than the timeout,
a dropped connection and a malformed body. The executor retries; the backend only
translates. Checked each time: the same answers (and the same sampled texts) as without
faults, one retry per injected fault in the summary, and the real server paid for each
sample exactly once. A fault that outlasts the retry budget fails only its own query.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import QUERIES, TIMEOUT_S, K, arithmetic_queries, outcome, run_vote, vote_network
from tests.integration.fault_proxy import at, dropped, malformed, rate_limited, server_error, slow, when_prompt_contains

FAULTS = {
    "429-retry-after": at({1: rate_limited("0.1"), 5: rate_limited("0"), 6: rate_limited(None)}),
    "5xx-burst": at({2: server_error(500), 3: server_error(503), 4: server_error(503, retry_after="0.05"),
                     5: server_error(502)}),
    "slower-than-timeout": at({3: slow(TIMEOUT_S + 10)}),
    "dropped-connection": at({0: dropped(), 6: dropped(), 7: dropped()}),
    "malformed-json": at({1: malformed(), 8: malformed()}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_are_retried_to_the_same_answers(proxy, baseline, name):
    proxy.reset(FAULTS[name])
    report = run_vote(vote_network(f"{proxy.url}/v1"))
    summary = report.summary
    injected = sum(proxy.faults.values())
    assert injected > 0
    assert summary["errors"] == 0, [r["error"] for r in report.results]
    assert summary["complete"] is True
    assert outcome(report) == baseline
    # one retry per injected fault (plus any request the busy machine let time out for real)
    assert summary["retries"] == injected + proxy.abandoned
    assert summary["attempts"] == summary["calls"] + summary["retries"] == proxy.received
    # the real server was paid for each sample once: no duplicate, nothing lost in a fault
    assert proxy.completed == proxy.samples == summary["samples"] == summary["calls"] == QUERIES * K


@pytest.mark.slow
def test_a_fault_outlasting_the_retry_budget_fails_only_its_query(proxy, baseline):
    victim = arithmetic_queries()[1]
    proxy.reset(when_prompt_contains(f"Question: {victim.question}\n", server_error(503)))
    report = run_vote(vote_network(f"{proxy.url}/v1"))
    by_id = {r["id"]: r for r in report.results}
    failed = by_id[victim.id]
    assert failed["answer"] is None and failed["correct"] is None  # an error, not a wrong answer
    assert failed["error"].startswith("BackendUnavailable") and "503" in failed["error"]
    assert "model 'srv'" in failed["error"]
    assert report.summary["errors"] == 1 and report.summary["complete"] is True
    others = {qid: got for qid, got in outcome(report).items() if qid != victim.id}
    assert others == {qid: want for qid, want in baseline.items() if qid != victim.id}
    assert proxy.faults["503"] == K * 5  # each of the K sample calls: 1 attempt + 4 retries
    assert failed["attempts"] == K * 5 and report.summary["attempts"] == proxy.received
    assert proxy.completed == (QUERIES - 1) * K
