"""tournament: a knockout over the candidates by pairwise selector calls (Chen et al.'s selector scaling).

Each round pairs the survivors in order (1 vs 2, 3 vs 4, ...); an odd one out gets a bye.
A match shows the pair as ``{candidates}`` (``1.`` and ``2.``); the reply's first number
picks the winner, and an unusable reply keeps the first of the pair. K candidates take
ceil(log2 K) rounds and K - 1 calls; match m (counted over the whole tournament) uses
seed ``seed + m``.
"""

from __future__ import annotations

import asyncio
import re

from llmnet.network.templates import render
from llmnet.nodes.base import Answer, Candidate, Context, numbered

DEFAULT_MATCH = ("{prompt}\n\nTwo candidate answers:\n{candidates}\n\nWhich candidate is correct, 1 or 2?\n"
                 "The correct candidate is number")


def winner(text: str) -> int:
    """0 or 1: the first '1' or '2' in a reply picks; anything else keeps the first candidate."""
    match = re.search(r"[12]", text)
    return int(match.group()) - 1 if match else 0


async def run(ctx: Context, name: str, spec, inputs) -> Answer:
    alive: list[Candidate] = [c for group in inputs for c in group]
    template = spec.prompt or DEFAULT_MATCH
    values = {**ctx.query.template_values(), "prompt": ctx.prompt}
    rounds: list[list[int]] = []
    match = 0
    while len(alive) > 1:
        pairs = [alive[i:i + 2] for i in range(0, len(alive) - 1, 2)]
        bye = alive[-1:] if len(alive) % 2 else []
        replies = await asyncio.gather(*(
            ctx.sample(name, spec, render(template, {**values, "candidates": numbered(pair)}), 1, role="select",
                       n_candidates=2, offset=match + j)
            for j, pair in enumerate(pairs)))
        match += len(pairs)
        picks = [winner(text) for (text,) in replies]
        rounds.append(picks)
        alive = [pair[p] for pair, p in zip(pairs, picks)] + bye
    best = alive[0] if alive else None
    ctx.note(name, rounds=rounds, answer=best.answer if best else None)
    return Answer(best.answer if best else None, best.text if best else None)
