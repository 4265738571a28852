"""vote: plurality over the candidates' extracted answers (Chen et al.'s Vote)."""

from __future__ import annotations

from llmnet.nodes.base import Answer, Context, plurality


async def run(ctx: Context, name: str, spec, inputs) -> Answer:
    candidates = [c for group in inputs for c in group]
    answer = plurality(candidates, lambda: ctx.rng(name, spec.seed))
    ctx.note(name, answer=answer)
    return Answer(answer)
