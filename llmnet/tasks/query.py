"""A query (one dataset item) as every part of llmnet sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmnet.network.templates import render


@dataclass(frozen=True)
class Query:
    """One item: ``question`` is what the prompt shows, ``answer`` the truth (if known).

    ``fields`` holds every other field of the item (JSONL keys, ``tests`` of a code task,
    ...); templates and rule routers can use them by name.
    """

    id: str
    question: str
    answer: str | None = None
    choices: tuple[str, ...] | None = None
    difficulty: float | None = None
    p_correct: float | None = None
    fields: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name; includes the derived ``question_length`` and ``question_words``."""
        if name in ("id", "question", "answer", "choices", "difficulty", "p_correct"):
            return getattr(self, name)
        if name == "question_length":
            return len(self.question)
        if name == "question_words":
            return len(self.question.split())
        return self.fields.get(name, default)

    def template_values(self) -> dict[str, Any]:
        values = dict(self.fields)
        values["id"], values["question"] = self.id, self.question
        if self.choices:
            letters = [chr(ord("A") + i) for i in range(len(self.choices))]
            values["choices"] = "\n".join(f"({l}) {c}" for l, c in zip(letters, self.choices))
        return values

__all__ = ["Query", "render"]
