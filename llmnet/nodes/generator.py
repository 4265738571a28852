"""generator: K samples from one model for the task prompt (sample i uses seed + i).

A generator with ``inputs`` reads them through its prompt's ``{candidates}`` (numbered) and
``{previous}`` (their plurality answer): a refine step or a fuser (see ``refine``).

For a ``code`` task whose query carries tests, each sample's program runs in the sandbox
and its answer is its behaviour class (``llmnet.answers.run_programs``); the trace keeps
each program's sandbox status.
"""

from __future__ import annotations

from llmnet.network.templates import render
from llmnet.nodes.base import Candidate, Context, flatten, input_fields
from llmnet.tasks.answers import code_task, run_programs


def prompt_for(ctx: Context, name: str, spec, candidates: list[Candidate] | None) -> str:
    """The node's prompt: the task's, or its own template with the query's fields (and, with
    inputs, ``{candidates}`` / ``{previous}``) filled in."""
    if spec.prompt is None:
        return ctx.prompt
    values = {**ctx.query.template_values(), "prompt": ctx.prompt}
    if candidates is not None:
        values.update(input_fields(candidates, lambda: ctx.rng(name, spec.seed)))
    return render(spec.prompt, values)


async def draw(ctx: Context, name: str, spec, prompt: str, k: int, offset: int = 0) -> list[Candidate]:
    texts = await ctx.sample(name, spec, prompt, k, offset=offset)
    task = code_task(ctx.query) if ctx.answer_spec.kind == "code" else None
    if task is None:
        return [Candidate(t, ctx.extract(t), 1.0, name) for t in texts]
    verdicts = await run_programs(task, texts)
    ctx.note(name, sandbox=[v.status for v in verdicts])
    return [Candidate(t, v.answer, 1.0, name) for t, v in zip(texts, verdicts)]


async def run(ctx: Context, name: str, spec, inputs) -> list[Candidate]:
    prompt = prompt_for(ctx, name, spec, flatten(inputs) if spec.inputs else None)
    out = await draw(ctx, name, spec, prompt, spec.samples)
    ctx.note(name, answers=[c.answer for c in out])
    return out
