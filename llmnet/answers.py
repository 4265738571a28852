"""Reading answers out of completions, and comparing them with the truth.

Extractors follow Chen et al.'s generator format first ("the answer is (X)") and fall
back to the first (or last) match, which is what few-shot completion prompts produce.
"""

from __future__ import annotations

import math
import re

from llmnet.spec import AnswerSpec

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer is\s*\(?\s*([^\s)]+)\s*\)?", re.IGNORECASE)


def _pick(matches: list[str], position: str) -> str | None:
    if not matches:
        return None
    return matches[0] if position == "first" else matches[-1]


def _number(text: str) -> str | None:
    raw = text.replace(",", "")
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
        return text  # programs are judged by running them (llmnet.code_tasks), not by text
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
        found = re.findall(r"\(?\b([A-Z])\b\)?", text.upper())
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
