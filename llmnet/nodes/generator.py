"""generator: K samples from one model for the task prompt (sample i uses seed + i)."""

from __future__ import annotations

from llmnet.nodes.base import Candidate, Context
from llmnet.templates import render


async def run(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    prompt = ctx.prompt if spec.prompt is None else render(spec.prompt, ctx.query.template_values())
    texts = await ctx.sample(name, spec, prompt, spec.samples)
    out = [Candidate(t, ctx.extract(t), 1.0, name) for t in texts]
    ctx.note(name, answers=[c.answer for c in out])
    return out
