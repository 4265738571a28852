"""select: an LLM reads the numbered candidates and picks one by its number."""

from __future__ import annotations

import re

from llmnet.network.templates import render
from llmnet.nodes.base import Answer, Context, plurality

DEFAULT_SELECT = ("{prompt}\n\nCandidate answers:\n{candidates}\n\nWhich candidate is correct? "
                  "Reply with its number.\nThe correct candidate is number")


async def run(ctx: Context, name: str, spec, inputs) -> Answer:
    candidates = [c for group in inputs for c in group]
    listing = "\n".join(f"{i}. {c.text.strip()}" for i, c in enumerate(candidates, 1))
    prompt = render(spec.prompt or DEFAULT_SELECT, {**ctx.query.template_values(), "prompt": ctx.prompt,
                                                     "candidates": listing})
    (text,) = await ctx.sample(name, spec, prompt, 1, role="select", n_candidates=len(candidates))
    match = re.search(r"\d+", text)
    index = int(match.group()) if match else 0
    if 1 <= index <= len(candidates):
        answer, how = candidates[index - 1].answer, "picked"
    else:  # an unusable pick falls back to the plurality, so the node still answers
        answer, how = plurality(candidates, lambda: ctx.rng(name, spec.seed)), "fallback-vote"
    ctx.note(name, answer=answer, pick=index, how=how)
    return Answer(answer)
