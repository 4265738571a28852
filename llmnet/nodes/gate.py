"""gate: a router picks ONE branch; only that branch's nodes run (and cost anything)."""

from __future__ import annotations

from llmnet.nodes.base import Answer, Context


async def run(ctx: Context, name: str, spec, inputs, router, branches) -> Answer:
    branch = router.choose(ctx.query, ctx.prompt, list(branches))
    if branch not in branches:
        raise ValueError(f"router of gate '{name}' chose unknown branch '{branch}'")
    ctx.note(name, branch=branch)
    result = await ctx.run_branch(name, branch, branches[branch])
    ctx.note(name, answer=result.answer)
    return result
