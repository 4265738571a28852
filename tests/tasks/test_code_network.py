"""A vote network over code answers: programs run in the sandbox, vote by behaviour."""

import json
import os
import subprocess
import sys

import pytest

from llmnet import loads_network
from llmnet.backends.base import Backend, Completion, Sample
from llmnet.errors import DatasetError
from llmnet.execute import RunConfig, run_network
from llmnet.tasks import answers
from llmnet.tasks.answers import behaviour_class, code_task, passed_every_test
from llmnet.tasks.datasets import load_dataset_counted
from llmnet.tasks.query import Query
from llmnet.tasks.sandbox import SandboxResult
from tests.conftest import GRAPHS, ROOT

CODE_NET = """
models: {m: {backend: simulated, model: scripted}}
task: {prompt: "{question}", answer: {kind: code}}
nodes:
  gen: {kind: generator, model: m, samples: %d}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


class Scripted(Backend):
    """Completion j of query q is ``programs[q.id][j]`` (the sample's seed is j)."""

    def __init__(self, programs):
        super().__init__("m", loads_network(CODE_NET % 1).spec.models["m"])
        self.programs = programs

    async def complete(self, request):
        text = self.programs[request.query.id][request.seed]
        return Completion((Sample(text, 1, 1),))


def run(programs, queries, tmp_path=None):
    k = len(next(iter(programs.values())))
    config = RunConfig(progress=False, backends={"m": Scripted(programs)},
                       out_dir=tmp_path, cache_path=None)
    return run_network(loads_network(CODE_NET % k), queries, config)


def add_query(qid="add", **fields):
    return Query(qid, "def add(a, b):", None, fields={"tests": ADD_TESTS, "entry_point": "add", **fields})


def result(status, per_test, errors=None, outputs=None):
    n = len(per_test)
    return SandboxResult(all(per_test) and status == "passed", status, "", tuple(per_test), 0.1,
                         test_errors=tuple(errors or [""] * n), test_outputs=tuple(outputs or ["x"] * n))


# --------------------------------------------------------------------------- classes
def test_behaviour_class_is_short_stable_and_says_what_passed():
    good = behaviour_class(result("passed", [True, True]))
    assert good == behaviour_class(result("passed", [True, True]))
    assert good.startswith("b:") and good.endswith(":PP") and len(good) <= 20
    assert passed_every_test(good)
    part = behaviour_class(result("failed", [True, False], ["", "AssertionError"]))
    assert part.endswith(":PF") and not passed_every_test(part)
    other = behaviour_class(result("failed", [True, False], ["", "AssertionError"], ["x", "y"]))
    assert other != part                                    # same pattern, other values
    for broken in ("timeout", "memory", "killed", "error", "blocked"):
        assert behaviour_class(result(broken, [False, False])) is None
    assert not passed_every_test(None) and not passed_every_test("42") and not passed_every_test("b:00:")


def test_code_task_validates_the_query_fields():
    assert code_task(Query("q", "x")) is None
    assert code_task(Query("q", "x", fields={"tests": "assert 1"}))["tests"] == ["assert 1"]
    for bad in ({"tests": []}, {"tests": [1, 2]}, {"tests": {"a": 1}},
                {"tests": ["assert 1"], "setup": 3}, {"tests": ["assert 1"], "entry_point": ["f"]}):
        with pytest.raises(DatasetError, match="query 'q'"):
            code_task(Query("q", "x", fields=bad))


# --------------------------------------------------------------------------- the network
def test_vote_groups_programs_by_behaviour_not_text(tmp_path):
    programs = {"add": [
        "def add(a, b):\n    return a - b\n",               # wrong, twice with the same text:
        "def add(a, b):\n    return a - b\n",               # a text vote would pick it
        "def add(a, b):\n    return a + b\n",
        "```python\ndef add(x, y):\n    return y + x\n```",
        "def add(a, b):\n    return sum((a, b))\n",
        "def add(a, b):\n    import os; os.system('true')\n",   # blocked: no behaviour
        "def add(a, b) return",                              # does not compile
    ]}
    report = run(programs, [add_query()], tmp_path)
    (rec,) = report.results
    assert rec["error"] is None and rec["correct"] is True
    assert rec["answer"].startswith("b:") and rec["answer"].endswith(":PPP")
    answers, statuses = rec["trace"]["gen"]["answers"], rec["trace"]["gen"]["sandbox"]
    assert answers[2] == answers[3] == answers[4] == rec["answer"]
    assert answers[0] == answers[1] != rec["answer"] and answers[0].endswith(":FFF")
    assert answers[5] is None and statuses[5].startswith("blocked")
    assert answers[6] is None and statuses[6].startswith("error: SyntaxError")
    assert statuses[2] == "passed" and statuses[0].startswith("failed: 3/3 tests failed")
    assert all(len(s) <= 90 for s in statuses)
    saved = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert saved == report.results
    assert report.summary["accuracy"] == 1.0 and report.summary["errors"] == 0


def test_broken_programs_do_not_win_and_are_failed_samples_not_errors():
    programs = {
        "one-ran": ["raise ValueError\n"] * 3 + ["def add(a, b):\n    return a * b\n"],
        "none-ran": ["def add(a, b) return"] * 2 + ["import os\nos.kill(1, 9)\n"] * 2,
    }
    report = run(programs, [add_query("one-ran"), add_query("none-ran")])
    one, none = report.results
    assert one["error"] is None and one["answer"].endswith(":FFP") and one["correct"] is False
    assert none["error"] is None and none["answer"] is None and none["correct"] is False
    assert none["trace"]["gen"]["sandbox"][2].startswith("blocked: os.kill")
    assert report.summary["errors"] == 0 and report.summary["graded"] == 2


def test_hostile_programs_are_contained_and_the_run_goes_on(monkeypatch):
    secret = "sk-test-SECRET-in-the-parent-env"
    monkeypatch.setenv("LLMNET_TEST_KEY", secret)
    leak = ("def add(a, b):\n    import os\n    return os.environ.get('LLMNET_TEST_KEY', 'none')\n")
    programs = {"leak": [leak] * 2, "kill": [f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\n"] * 2,
                "ok": ["def add(a, b):\n    return a + b\n"] * 2}
    report = run(programs, [add_query(q) for q in programs])
    leak_rec, kill_rec, ok_rec = report.results
    assert leak_rec["correct"] is False and kill_rec["answer"] is None and ok_rec["correct"] is True
    assert secret not in json.dumps(report.results)


def test_malformed_tests_are_a_query_error_not_a_crash():
    programs = {"bad": ["def add(a, b):\n    return a + b\n"], "good": ["def add(a, b):\n    return a + b\n"]}
    report = run(programs, [Query("bad", "x", "y", fields={"tests": [1]}), add_query("good")])
    bad, good = report.results
    assert "DatasetError" in bad["error"] and "'tests'" in bad["error"] and bad["correct"] is None  # an error is not a wrong answer
    assert good["correct"] is True and report.summary["errors"] == 1


def test_a_sandbox_that_cannot_start_is_the_query_error(monkeypatch):
    async def no_pipes(task, text, **limits):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(answers, "acheck_completion", no_pipes)
    report = run({"a": ["x"], "b": ["y"]}, [add_query("a"), add_query("b")])
    assert [r["error"] for r in report.results] == ["SandboxError: cannot run the sandbox: "
                                                    "[Errno 24] Too many open files"] * 2
    assert report.summary["errors"] == 2 and report.summary["complete"] is True


def test_code_query_without_tests_falls_back_to_text():
    report = run({"q": ["print(1)\n"]}, [Query("q", "x", "print(1)")])
    assert report.results[0]["answer"] == "print(1)\n" and report.results[0]["correct"] is True


# --------------------------------------------------------------------------- datasets
def test_humaneval_canonical_body_passes_and_a_wrong_one_fails():
    queries, bad = load_dataset_counted("humaneval", limit=2)
    assert bad == 0 and [q.id for q in queries] == ["HumanEval/0", "HumanEval/1"]
    q = queries[0]
    body = q.answer[len(q.question):]
    programs = {"HumanEval/0": [body, body, "    return False\n"], "HumanEval/1": ["    return []\n"] * 3}
    report = run(programs, queries)
    first, second = report.results
    assert first["correct"] is True and first["trace"]["gen"]["sandbox"][:2] == ["passed", "passed"]
    assert second["correct"] is False and second["error"] is None


def test_mbpp_route_with_bad_lines(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    rows = [{"task_id": 1, "text": "Add two numbers.", "code": "def add(a, b):\n    return a + b",
             "test_list": ADD_TESTS[:2]},
            {"task_id": 2, "text": "Square.", "code": "def sq(x):\n    return x * x",
             "test_list": ["assert sq(3) == 9"], "test_setup_code": "import math"}]
    path.write_text("\n".join(map(json.dumps, rows)) + "\n{not json\n" + json.dumps({"text": 3}) + "\n")
    with pytest.raises(DatasetError, match=r"mbpp.jsonl:3"):
        load_dataset_counted(f"mbpp:{path}")
    queries, bad = load_dataset_counted(f"mbpp:{path}", skip_bad=True)
    assert bad == 2 and [q.id for q in queries] == ["mbpp/1", "mbpp/2"]
    assert queries[1].fields["setup"] == "import math" and "assert sq(3) == 9" in queries[1].question
    programs = {"mbpp/1": ["```python\ndef add(a, b):\n    return a + b\n```"],
                "mbpp/2": ["def sq(x):\n    return x + x\n"]}
    report = run(programs, queries)
    assert [r["correct"] for r in report.results] == [True, False]
    with pytest.raises(DatasetError, match="needs a file"):
        load_dataset_counted("mbpp:")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset_counted(f"mbpp:{tmp_path / 'nope.jsonl'}")
    path.write_text("\n".join(map(json.dumps, rows[:1] * 2)) + "\n")
    with pytest.raises(DatasetError, match="duplicate task_id '1'"):
        load_dataset_counted(f"mbpp:{path}")
    assert load_dataset_counted(f"mbpp:{path}", skip_bad=True)[1] == 1


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_humaneval_vote_graph_runs_end_to_end_on_smollm2(tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "he"
    res = subprocess.run([sys.executable, "-m", "llmnet", "run", GRAPHS / "humaneval_vote.yaml",
                          "--data", "humaneval", "--limit", "1", "--set", "K=2", "--out", out,
                          "--cache", tmp_path / "cache.sqlite", "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    (rec,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rec["id"] == "HumanEval/0" and rec["error"] is None and rec["correct"] in (True, False)
    assert len(rec["trace"]["gen"]["sandbox"]) == 2
    assert json.loads((out / "summary.json").read_text())["graded"] == 1


def test_passes_judged_inside_the_sandbox_are_marked_weak_in_trace_and_summary(tmp_path):
    programs = {"add": ["def add(a, b):\n    return a + b\n"] * 2}
    strong = run(programs, [add_query()])
    weak = run(programs, [add_query(tests=["assert add(1, 2) > 2", "assert add(1, 1) == 2"])], tmp_path)
    assert strong.results[0]["trace"]["gen"]["sandbox"] == ["passed", "passed"]
    assert strong.summary["sandbox"] == {"programs": 2, "weak_passes": 0}
    assert weak.results[0]["trace"]["gen"]["sandbox"] == ["passed (weak)", "passed (weak)"]
    assert weak.summary["sandbox"] == {"programs": 2, "weak_passes": 2}
    assert json.loads((tmp_path / "summary.json").read_text())["sandbox"]["weak_passes"] == 2
