"""refine: a chain of ``rounds`` generator calls, each reading the round before.

Chen et al.'s generator-scaling network chains generators so each sees the previous
answers; here the chain's length is one field, so it can be swept as a parameter. Round 1
reads the node's inputs; round r reads round r-1's candidates as ``{candidates}`` and their
plurality answer as ``{previous}``. Round r's samples use seeds ``seed + (r-1)·samples + i``,
so two rounds that happen to see the same prompt still draw independent samples.
"""

from __future__ import annotations

from llmnet.nodes.base import Candidate, Context, flatten
from llmnet.nodes.generator import draw, prompt_for


async def run(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    current = flatten(inputs)
    history = []
    for r in range(spec.rounds):
        prompt = prompt_for(ctx, name, spec, current)
        current = await draw(ctx, name, spec, prompt, spec.samples, offset=r * spec.samples)
        history.append([c.answer for c in current])
    ctx.note(name, rounds=history)
    return current
