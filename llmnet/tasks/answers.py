"""Reading answers out of completions, and comparing them with the truth.

Extractors follow Chen et al.'s generator format first ("the answer is (X)") and fall
back to the first (or last) match, which is what few-shot completion prompts produce.

A ``code`` answer is read by running the program: the program in each completion runs
in the sandbox against the query's tests, and its answer is its behaviour class
(``behaviour_class``), so a vote groups programs by what they do, not by their text
(Chen et al.'s Vote over ``llmnet.tasks.code.behaviour_signature``). A program that did
not run to the end (crash, timeout, memory, blocked) has no behaviour, hence no answer:
it does not vote. The query is correct iff the chosen class passed every test.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmnet.errors import DatasetError
from llmnet.network.spec import AnswerSpec
from llmnet.tasks.code import acheck_completion, behaviour_signature
from llmnet.tasks.sandbox import SandboxError, SandboxResult

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer is\s*\(?\s*([^\s)]+)\s*\)?", re.IGNORECASE)


def _pick(matches: list[str], position: str) -> str | None:
    if not matches:
        return None
    return matches[0] if position == "first" else matches[-1]


def _number(text: str) -> str | None:
    raw = text.replace(",", "")
    if raw.isascii() and raw.isdigit() and len(raw) < 16:  # a plain whole number (most answers): as float() would give it
        return str(int(raw))
    try:
        value = float(raw)
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def extract(spec: AnswerSpec, text: str, choices: tuple[str, ...] | None = None) -> str | None:
    """The normalised answer in ``text``, or None when there is none."""
    if spec.kind == "code":
        return text  # programs are judged by running them (llmnet.tasks.code), not by text
    said = _ANSWER_IS.search(text)
    if spec.kind == "number":
        pool = [said.group(1)] if said and _NUMBER.fullmatch(said.group(1).rstrip(".")) else []
        pool = pool or _NUMBER.findall(text)
        value = _pick(pool, spec.position)
        return _number(value.rstrip(".")) if value else None
    if spec.kind == "choice":
        labels = spec.choices or [chr(ord("A") + i) for i in range(len(choices) if choices else 4)]
        if said and said.group(1).strip("().").upper() in labels:
            return said.group(1).strip("().").upper()
        found = re.findall(r"(?<![A-Z0-9~_\-])\(?([A-Z])\)?(?=$|[\s.,:;!?)])", text.upper())
        return _pick([f for f in found if f in labels], spec.position)
    if spec.kind == "regex":
        matches = [m.group(1) if m.groups() else m.group(0) for m in re.finditer(spec.pattern, text)]
        value = _pick(matches, spec.position)
        return value.strip() if value is not None else None
    first = text.strip().splitlines()[0] if text.strip() else ""
    return normalise_text(first) or None


def normalise_text(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())


def is_correct(spec: AnswerSpec, answer: str | None, truth: str | None) -> bool | None:
    """True/False, or None when the query has no known answer."""
    if truth is None:
        return None
    if answer is None:
        return False
    if spec.kind == "number":
        t = _number(str(truth).replace(",", ""))
        try:
            return t is not None and math.isclose(float(answer), float(t), rel_tol=1e-9, abs_tol=1e-9)
        except ValueError:
            return False
    if spec.kind == "choice":
        return answer.strip().upper() == str(truth).strip().upper()
    if spec.kind == "regex":
        return answer.strip() == str(truth).strip()
    return normalise_text(answer) == normalise_text(str(truth))


# --------------------------------------------------------------------------- code answers
@dataclass(frozen=True)
class ProgramVerdict:
    """One completion's program after the sandbox: its behaviour class (``None`` when it
    did not run to the end) and a short status for the trace."""

    answer: str | None
    status: str


def code_task(query: Any) -> dict[str, Any] | None:
    """What the sandbox needs from a query (``tests``, ``setup``, ``entry_point``,
    ``code_prompt``), or None when the query carries no ``tests``. A malformed field is a
    ``DatasetError`` naming it: model-written code is never run against tests we cannot
    read."""
    tests = query.get("tests")
    if tests is None:
        return None
    tests = [tests] if isinstance(tests, str) else tests
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise DatasetError(f"query '{query.id}': 'tests' must be a string or a non-empty list of strings")
    task = {"tests": tests, "setup": query.get("setup") or "",
            "entry_point": query.get("entry_point"), "code_prompt": query.get("code_prompt")}
    for name in ("setup", "entry_point", "code_prompt"):
        if task[name] is not None and not isinstance(task[name], str):
            raise DatasetError(f"query '{query.id}': '{name}' must be a string")
    return task


def behaviour_class(result: SandboxResult) -> str | None:
    """``b:<digest>:<pattern>`` for a program that ran, e.g. ``b:3f9a0c21d4:PPF`` (P/F per
    test; the digest is of ``behaviour_signature``: errors and values per test); None
    for one that did not run to the end."""
    signature = behaviour_signature(result)
    if signature[0] != "ran":
        return None
    digest = hashlib.blake2b(repr(signature).encode(), digest_size=5).hexdigest()
    return f"b:{digest}:" + "".join("P" if ok else "F" for ok in result.per_test)


def passed_every_test(answer: str | None) -> bool:
    """Is ``answer`` the behaviour class of a program that passed all its tests?"""
    if answer is None or not answer.startswith("b:"):
        return False
    pattern = answer.rpartition(":")[2]
    return bool(pattern) and set(pattern) == {"P"}


async def run_programs(task: dict[str, Any], texts: Sequence[str], **limits: Any) -> list[ProgramVerdict]:
    """Extract and run the program of each completion in the sandbox (concurrently, never
    in this process); a program's failure is its verdict, never an exception. Only a
    sandbox that cannot start raises (``SandboxError``: the query's error, not the run's)."""
    try:
        results = await asyncio.gather(*(acheck_completion(task, t, **limits) for t in texts))
    except OSError as exc:      # no temp dir, no pipe, no process: this machine, not the program
        raise SandboxError(f"cannot run the sandbox: {exc}") from exc
    return [ProgramVerdict(behaviour_class(r), _short_status(r)) for r in results]


def _short_status(result: SandboxResult) -> str:
    if result.passed:       # "weak": a test judged inside the sandbox, which a program can forge
        return result.status + (" (weak)" if result.weak_verdict else "")
    detail = result.detail if result.detail.startswith(result.status) else f"{result.status}: {result.detail}"
    return detail[:90]
