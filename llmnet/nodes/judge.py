"""judge, filter and filter_vote: an LLM reviews each candidate (Chen et al.'s Filter-Vote).

The judge's verdict gives each candidate a weight w in {0, 1}; ``filter`` drops the
w = 0 ones (keeping all when none survives), ``filter_vote`` then takes the plurality
argmax_a sum_i w_i 1[z_i = a], again over all candidates when every one was rejected.
"""

from __future__ import annotations

import asyncio
import re

from llmnet.network.templates import render
from llmnet.nodes.base import Answer, Candidate, Context, plurality

DEFAULT_JUDGE = ("{prompt} {candidate}\n\nReview your previous answer and find problems with it. "
                 "Conclude with [[correct]] or [[wrong]].\nVerdict: [[")


def verdict(text: str) -> bool:
    """True for a [[correct]] verdict; the first of 'correct'/'wrong' decides, 'wrong' if neither."""
    match = re.search(r"\b(correct|wrong|incorrect)\b", text.lower())
    return bool(match) and match.group(1) == "correct"


async def judge(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    candidates = [c for group in inputs for c in group]
    template = spec.prompt or DEFAULT_JUDGE
    values = ctx.query.template_values()
    prompts = [render(template, {**values, "prompt": ctx.prompt, "candidate": c.text.strip(),
                                 "answer": c.answer if c.answer is not None else c.text.strip()})
               for c in candidates]
    # judge call i uses seed + i: identical candidates still get independent verdicts
    replies = await asyncio.gather(*(ctx.sample(name, spec, p, 1, role="judge", candidate=c.answer, offset=i)
                                     for i, (p, c) in enumerate(zip(prompts, candidates))))
    verdicts = [verdict(text) for (text,) in replies]
    ctx.note(name, verdicts=verdicts)
    return [Candidate(c.text, c.answer, float(v), c.source) for c, v in zip(candidates, verdicts)]


def kept(judged: list[Candidate]) -> list[Candidate]:
    survivors = [c for c in judged if c.weight > 0]
    return survivors or [Candidate(c.text, c.answer, 1.0, c.source) for c in judged]


async def filter_(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    return kept(await judge(ctx, name, spec, inputs))


async def filter_vote(ctx: Context, name: str, spec, inputs) -> Answer:
    survivors = kept(await judge(ctx, name, spec, inputs))
    answer = plurality(survivors, lambda: ctx.rng(name, spec.vote_seed))
    ctx.note(name, answer=answer)
    return Answer(answer)
