"""rank: an LLM orders the numbered candidates, best first; the top ``keep`` go on (Archon's ranker)."""

from __future__ import annotations

import re

from llmnet.network.templates import render
from llmnet.nodes.base import Candidate, Context, numbered

DEFAULT_RANK = ("{prompt}\n\nCandidate answers:\n{candidates}\n\nRank the candidates from best to worst by their "
                "numbers, e.g. 2 > 1 > 3.\nRanking:")


def ranking(text: str, n: int) -> list[int]:
    """0-based order from a reply: first mentions of valid numbers 1..n, then the unnamed ones in order."""
    order: list[int] = []
    for m in re.finditer(r"\d+", text):
        i = int(m.group()) - 1
        if 0 <= i < n and i not in order:
            order.append(i)
    return order + [i for i in range(n) if i not in order]


async def run(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    candidates = [c for group in inputs for c in group]
    prompt = render(spec.prompt or DEFAULT_RANK, {**ctx.query.template_values(), "prompt": ctx.prompt,
                                                   "candidates": numbered(candidates)})
    (text,) = await ctx.sample(name, spec, prompt, 1, role="select", n_candidates=len(candidates))
    order = ranking(text, len(candidates))
    top = [candidates[i] for i in order[: spec.keep]]
    ctx.note(name, order=[i + 1 for i in order], answers=[c.answer for c in top])
    return top
