"""Recorded sample pools as input: analyse samples a user already has, at no model cost.

One JSON object per line, one line per query::

    {"id": "q1", "answer": "B", "samples": ["B", "C", null, ...],
     "verdicts": [1, 0, ...],        # optional: the judge's 0/1 per sample (Filter-Vote)
     "difficulty": 0.3}              # optional; checked, not used (d is computed from the samples)

``samples`` are extracted answers (``null`` = unparseable: an answer that is never right);
answers are compared as strings after ``str()``. Every malformed line is reported as
``file:line: what is wrong``, as datasets are; ids must be unique.
"""

from __future__ import annotations

from pathlib import Path

from llmnet.errors import DatasetError
from llmnet.scaling.vote import Pool
from llmnet.tasks.jsonl import read_jsonl

_FIELDS = {"id", "answer", "samples", "verdicts", "difficulty"}


def _answer(value, where: str, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DatasetError(f"{where}: {what} must be a string or a number (or null), got {type(value).__name__}")
    return str(value)


def parse_pool(obj, where: str) -> Pool:
    """One line's object as a :class:`Pool`, or a ``DatasetError`` naming ``where``."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise DatasetError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")
    for name in ("id", "answer", "samples"):
        if name not in obj:
            raise DatasetError(f"{where}: missing '{name}'")
    qid = obj["id"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        raise DatasetError(f"{where}: 'id' must be a non-empty string or an integer")
    truth = _answer(obj["answer"], where, "'answer'")
    if truth is None:
        raise DatasetError(f"{where}: 'answer' is null: a pool needs the true answer")
    samples = obj["samples"]
    if not isinstance(samples, list) or not samples:
        raise DatasetError(f"{where}: 'samples' must be a non-empty list of extracted answers")
    answers = tuple(_answer(s, where, f"samples[{i}]") for i, s in enumerate(samples))
    verdicts = obj.get("verdicts")
    if verdicts is not None:
        if not isinstance(verdicts, list) or any(v not in (0, 1) or isinstance(v, float) for v in verdicts):
            raise DatasetError(f"{where}: 'verdicts' must be a list of 0/1 (or true/false), one per sample")
        if len(verdicts) != len(answers):
            raise DatasetError(f"{where}: {len(verdicts)} verdicts for {len(answers)} samples (need one per sample)")
        verdicts = tuple(bool(v) for v in verdicts)
    diff = obj.get("difficulty")
    if diff is not None and (isinstance(diff, bool) or not isinstance(diff, (int, float))):
        raise DatasetError(f"{where}: 'difficulty' must be a number")
    return Pool(str(qid), answers, truth, verdicts)


def read_pools(path: str | Path) -> list[Pool]:
    """Every pool in a JSONL file (see the module docstring); at least one line."""
    pools: list[Pool] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        if isinstance(obj, DatasetError):
            raise obj
        where = f"{path}:{lineno}"
        pool = parse_pool(obj, where)
        if pool.query_id in seen:
            raise DatasetError(f"{where}: duplicate id '{pool.query_id}' (first on line {seen[pool.query_id]})")
        seen[pool.query_id] = lineno
        pools.append(pool)
    if not pools:
        raise DatasetError(f"{path}: no pools (one JSON object per line: id, answer, samples)")
    return pools


__all__ = ["parse_pool", "read_pools"]
