"""What nodes pass along, and the context a node runs in.

Each node kind is one module with one ``async def run(ctx, name, spec, inputs)``; the
executor calls it when the node's inputs are done.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Candidate:
    """One sampled completion on its way to a selector."""

    text: str
    answer: str | None
    weight: float = 1.0
    source: str = ""

    def __init__(self, text: str, answer: str | None, weight: float = 1.0, source: str = "") -> None:
        # (what the generated __init__ of a frozen dataclass does, an object.__setattr__ a field, in half the
        # time: K are made per query; still frozen, compared and hashed by its fields)
        d = self.__dict__
        d["text"], d["answer"], d["weight"], d["source"] = text, answer, weight, source


@dataclass(frozen=True)
class Answer:
    """A node's single answer."""

    answer: str | None
    text: str | None = None

    def __init__(self, answer: str | None, text: str | None = None) -> None:
        d = self.__dict__  # (as Candidate's)
        d["answer"], d["text"] = answer, text


Output = list[Candidate] | Answer


class Context(Protocol):
    """What a node may use (implemented by ``llmnet.execute.engine.QueryRun``)."""

    query: Any
    prompt: str
    answer_spec: Any

    async def sample(self, name: str, spec: Any, prompt: str, k: int, role: str = "generate",
                     candidate: str | None = None, n_candidates: int = 0, offset: int = 0) -> list[str]: ...

    def extract(self, text: str) -> str | None: ...

    def note(self, name: str, **info: Any) -> None: ...

    async def run_branch(self, gate: str, branch: str, network: Any) -> Answer: ...

    def router_models(self, gate: str) -> Any: ...

    def rng(self, name: str, seed: int = 0) -> random.Random: ...


def seeded_rng(*parts: object) -> random.Random:
    """A coin that depends only on its parts (run seed, query id, node name)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def plurality(candidates: list[Candidate], rng: Callable[[], random.Random]) -> str | None:
    """Weighted plurality of extracted answers; ties broken uniformly by the coin ``rng()``.

    Chen et al.: output argmax_a sum_i w_i 1[z_i = a]. Candidates with no extractable
    answer do not vote.
    """
    scores: dict[str, float] = {}
    for c in candidates:
        if c.answer is not None and c.weight > 0:
            scores[c.answer] = scores.get(c.answer, 0.0) + c.weight
    if not scores:
        return None
    best = max(scores.values())
    tied = sorted(a for a, s in scores.items() if s == best)
    return tied[0] if len(tied) == 1 else rng().choice(tied)  # the coin is only made when needed


def flatten(inputs: list[Output]) -> list[Candidate]:
    """The candidates of all inputs, in order; an input's single answer counts as one candidate."""
    out: list[Candidate] = []
    for group in inputs:
        if isinstance(group, Answer):
            text = group.text if group.text is not None else ("" if group.answer is None else str(group.answer))
            out.append(Candidate(text, group.answer))
        else:
            out.extend(group)
    return out


def numbered(candidates: list[Candidate]) -> str:
    """``1. text`` lines, the ``{candidates}`` a prompt sees."""
    return "\n".join(f"{i}. {(c.text.strip() or (c.answer or ''))}" for i, c in enumerate(candidates, 1))


def input_fields(candidates: list[Candidate], rng: Callable[[], random.Random]) -> dict[str, str]:
    """``{candidates}`` (numbered) and ``{previous}`` (the plurality answer of the inputs; the
    first candidate's text when none has an extractable answer)."""
    previous = plurality(candidates, rng)
    if previous is None:
        previous = candidates[0].text.strip() if candidates else ""
    return {"candidates": numbered(candidates), "previous": previous}
