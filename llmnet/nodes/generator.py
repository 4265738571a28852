"""generator: K samples from one model for the task prompt (sample i uses seed + i).

For a ``code`` task whose query carries tests, each sample's program runs in the sandbox
and its answer is its behaviour class (``llmnet.answers.run_programs``); the trace keeps
each program's sandbox status.
"""

from __future__ import annotations

from llmnet.network.templates import render
from llmnet.nodes.base import Candidate, Context
from llmnet.tasks.answers import code_task, run_programs


async def run(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    prompt = ctx.prompt if spec.prompt is None else render(spec.prompt, ctx.query.template_values())
    texts = await ctx.sample(name, spec, prompt, spec.samples)
    task = code_task(ctx.query) if ctx.answer_spec.kind == "code" else None
    if task is None:
        out = [Candidate(t, ctx.extract(t), 1.0, name) for t in texts]
        ctx.note(name, answers=[c.answer for c in out])
        return out
    verdicts = await run_programs(task, texts)
    ctx.note(name, answers=[v.answer for v in verdicts], sandbox=[v.status for v in verdicts])
    return [Candidate(t, v.answer, 1.0, name) for t, v in zip(texts, verdicts)]
