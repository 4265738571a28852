"""gate: a router picks ONE branch; only that branch's nodes run (and cost anything)."""

from __future__ import annotations

import inspect

from llmnet.nodes.base import Answer, Context


async def run(ctx: Context, name: str, spec, inputs, router, branches) -> Answer:
    """An async router (``achoose``) gets the network's models through ``ctx.router_models``."""
    achoose = getattr(router, "achoose", None)
    if achoose is not None:
        branch = await achoose(ctx.query, ctx.prompt, list(branches), ctx.router_models(name))
    else:
        branch = router.choose(ctx.query, ctx.prompt, list(branches))
        if inspect.isawaitable(branch):
            branch = await branch
    if branch not in branches:
        raise ValueError(f"router of gate '{name}' chose unknown branch '{branch}'")
    ctx.note(name, branch=branch)
    result = await ctx.run_branch(name, branch, branches[branch])
    ctx.note(name, answer=result.answer)
    return result
