from __future__ import annotations

import ast
import asyncio
import json
import random

import pytest

from llmnet.errors import DatasetError
from llmnet.tasks.code import (
    BehaviourClass,
    acheck_completion,
    avote_programs,
    behaviour_signature,
    check_completion,
    extract_program,
    load_humaneval,
    load_mbpp_jsonl,
    vote_behaviours,
    vote_programs,
)
from llmnet.tasks.sandbox import SandboxResult, run_sandboxed

PROMPT = ('from typing import List\n\n\ndef total(xs: List[int]) -> int:\n'
          '    """ Sum of xs.\n    >>> total([1, 2])\n    3\n    """\n')


def defines(program: str, line: str) -> bool:
    return line in program.splitlines()


# --------------------------------------------------------------------------- extraction
def test_fenced_python_block():
    text = "Sure!\n```python\ndef f(x):\n    return x + 1\n```\nIt adds one."
    assert extract_program(text) == "def f(x):\n    return x + 1\n"


def test_untagged_and_unterminated_fences():
    assert extract_program("```\ndef f():\n    return 2\n```") == "def f():\n    return 2\n"
    cut = "Here:\n```python\ndef f():\n    return 3\n"            # max_tokens hit
    assert extract_program(cut) == "def f():\n    return 3\n"


def test_block_defining_the_entry_point_wins_over_longer_ones():
    usage = "```python\n" + "print(solve(1))\n" * 5 + "```"
    text = f"{usage}\n```python\ndef solve(n):\n    return n\n```\n```bash\npython x.py\n```"
    assert extract_program(text, "solve") == "def solve(n):\n    return n\n"
    assert extract_program(text).startswith("print(solve(1))")      # no entry point: longest


def test_non_python_blocks_are_skipped():
    text = "```json\n{\"a\": 1}\n```\n```py\ndef g():\n    return 1\n```"
    assert extract_program(text, "g") == "def g():\n    return 1\n"


def test_raw_code_with_prose_around_it():
    text = "Here is my answer:\ndef f(x):\n    return -x\n\nThis negates x."
    assert extract_program(text, "f") == "def f(x):\n    return -x\n"
    assert extract_program("def f():\n    return 1\n") == "def f():\n    return 1\n"


def test_completion_continuing_the_prompt():
    program = extract_program("    return sum(xs)\n\nprint(total([1]))\n", "total", PROMPT)
    assert program == PROMPT + "    return sum(xs)\n"


def test_body_that_lost_its_indentation_is_reindented():
    program = extract_program("```python\ns = 0\nfor x in xs:\n    s += x\nreturn s\n```",
                              "total", PROMPT)
    assert program.startswith(PROMPT) and program.endswith("    return s\n")
    ast.parse(program)


def test_full_function_gets_the_prompt_imports():
    completion = "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    program = extract_program(completion, "total", PROMPT)
    assert program.startswith("from typing import List")
    assert program.endswith("def total(xs: List[int]) -> int:\n    return sum(xs)\n")
    assert run_sandboxed(program, ["assert total([1, 2]) == 3"]).passed


def test_entry_point_defaults_to_the_prompts_last_function():
    assert extract_program("    return 0\n", prompt=PROMPT) == PROMPT + "    return 0\n"


# --------------------------------------------------------------------------- HumanEval
@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


def test_humaneval_loader_shape(humaneval):
    assert len(humaneval) == 164
    first = humaneval[0]
    assert first["id"] == "HumanEval/0" and first["kind"] == "code"
    assert first["entry_point"] == "has_close_elements"
    assert first["answer"].startswith(first["question"])
    assert first["tests"][0].rstrip().endswith("check(has_close_elements)")
    assert len(load_humaneval(limit=3)) == 3


@pytest.mark.parametrize("index", [0, 10, 32, 163])
def test_humaneval_canonical_solutions_pass(humaneval, index):
    task = humaneval[index]
    body = task["answer"][len(task["question"]):]
    result = check_completion(task, body, timeout_s=10, cpu_s=10)     # as a continuation
    assert result.passed, (task["id"], result.status, result.detail)


def test_humaneval_wrong_solution_fails(humaneval):
    task = humaneval[2]
    result = check_completion(task, "    return 0.0\n")
    assert not result.passed and result.status == "failed"
    assert result.per_test == (False,) and "AssertionError" in result.detail


# --------------------------------------------------------------------------- MBPP
MBPP_GOOD = [
    {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
     "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
     "test_list": ["assert set(similar_elements((3, 4, 5), (5, 4))) == {4, 5}",
                   "assert similar_elements((1,), (2,)) == ()"],
     "test_setup_code": "", "challenge_test_list": []},
    {"text": "Write a python function to double a number.",
     "code": "import math\ndef double(n):\n    return 2 * n",
     "test_list": ["assert math.floor(double(2.5)) == 5"], "test_setup_code": "import math"},
]


def write_mbpp(path, rows_or_lines) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r)
                              for r in rows_or_lines) + "\n")


def test_mbpp_loader(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    write_mbpp(path, MBPP_GOOD)
    tasks = load_mbpp_jsonl(path)
    assert [t["id"] for t in tasks] == ["mbpp/2", "mbpp/line2"]
    assert tasks[0]["question"].endswith(MBPP_GOOD[0]["test_list"][0])
    assert tasks[0]["entry_point"] == "similar_elements" and tasks[1]["entry_point"] == "double"
    assert tasks[1]["setup"] == "import math" and tasks.skipped == ()
    for task in tasks:
        result = check_completion(task, f"```python\n{task['answer']}\n```")
        assert result.passed, (task["id"], result.detail)


def test_mbpp_bad_lines_name_the_line_or_are_skipped(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    write_mbpp(path, [MBPP_GOOD[0], "{not json", {"text": "x", "code": "y"},
                      "", MBPP_GOOD[1], "[1, 2]"])
    with pytest.raises(DatasetError, match=r"mbpp\.jsonl:2: invalid JSON"):
        load_mbpp_jsonl(path)
    tasks = load_mbpp_jsonl(path, skip_bad=True)
    assert len(tasks) == 2
    assert [line for line, _ in tasks.skipped] == [2, 3, 6]
    assert "test_list" in tasks.skipped[1][1]


def test_mbpp_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        load_mbpp_jsonl(tmp_path / "absent.jsonl")


# --------------------------------------------------------------------------- voting
def result(status="failed", per_test=(True,), errors=("",), outputs=("a",)) -> SandboxResult:
    return SandboxResult(passed=status == "passed", status=status, detail="",
                         per_test=per_test, duration_s=0.0, test_errors=errors,
                         test_outputs=outputs)


def test_signature_groups_by_behaviour_not_text():
    a, b = result(outputs=("x",)), result(outputs=("x",))
    assert behaviour_signature(a) == behaviour_signature(b)
    assert behaviour_signature(a) != behaviour_signature(result(outputs=("y",)))
    assert behaviour_signature(result("timeout")) != behaviour_signature(a)
    hash(behaviour_signature(a))


def test_plurality_and_broken_programs_cannot_win():
    results = [result("error", (False,), ("SyntaxError",), ("",))] * 3 + \
              [result(outputs=("x",)), result(outputs=("y",)), result(outputs=("y",))]
    winner, classes = vote_behaviours(results)
    assert winner == 4
    assert classes[0] == BehaviourClass(behaviour_signature(results[0]), (0, 1, 2))
    assert vote_behaviours(results, drop_broken=False)[0] == 0
    assert vote_behaviours(results[:3])[0] == 0                  # nothing ran: all kept


def test_ties_are_broken_by_the_seeded_coin():
    results = [result(outputs=("x",)), result(outputs=("y",))]
    winners = {vote_behaviours(results, rng=seed)[0] for seed in range(20)}
    assert winners == {0, 1}
    assert vote_behaviours(results, rng=7)[0] == vote_behaviours(results, rng=random.Random(7))[0]
    with pytest.raises(ValueError):
        vote_behaviours([])


def test_vote_programs_runs_them_in_the_sandbox():
    programs = ["def f(x):\n    return x * 2\n",
                "def f(x):\n    return x + x\n",          # same behaviour, other text
                "def f(x):\n    return x ** 2\n",
                "def f(x):\n    return 2 * x\n",
                "def f(x):\n    return x ** 2 if x else 0\n",
                "def f(x:\n"]
    winner, classes = vote_programs(programs, ["f(3)", "f(0)", "f(5)"], timeout_s=5)
    assert winner == 0
    assert {c.members for c in classes} == {(0, 1, 3), (2, 4), (5,)}


def test_async_check_and_vote(humaneval):
    task = humaneval[0]

    async def main():
        checked = await acheck_completion(task, "    return False\n")
        vote = await avote_programs(["def f():\n    return 1\n"] * 2 + ["def f():\n    return 2\n"],
                                    ["f()"])
        return checked, vote
    checked, (winner, classes) = asyncio.run(main())
    assert checked.status == "failed"
    assert winner == 0 and classes[0].members == (0, 1)
