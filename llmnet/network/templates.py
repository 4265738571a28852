"""Prompt templates: formatted with plain names, never evaluated."""

from __future__ import annotations

import functools
import re
import string
from typing import Any


@functools.lru_cache(maxsize=1024)
def template_fields(template: str) -> tuple[str, ...]:
    """Field names a prompt template uses; raises ValueError for anything but plain names.

    Templates are formatted with ``str.format`` on plain names only: attribute and index
    access (``{question.__class__}``, ``{x[0]}``) is refused, so a template can never
    reach into Python objects. Literal braces are written ``{{`` and ``}}``.
    """
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (write literal braces as '{{{{' and '}}}}')") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
            raise ValueError(f"template field '{{{field}}}' must be a plain name like {{question}}")
        if conversion or spec:  # '{question:>2000000000}' would pad to gigabytes
            raise ValueError(f"template field '{{{field}}}' may not use conversions or format specs "
                             f"(':' or '!'): write a plain {{{field}}}")
        names.append(field)
    return tuple(names)


# fields a node kind adds to the query's own (see llmnet.nodes.judge and llmnet.nodes.select)
NODE_FIELDS = {"judge": ("prompt", "candidate", "answer"), "filter": ("prompt", "candidate", "answer"),
               "filter_vote": ("prompt", "candidate", "answer"), "select": ("prompt", "candidates")}


def missing_fields(network: Any, queries: Any) -> list[tuple[str, str, str]]:
    """(YAML path, field, did-you-mean hint) for every prompt field some query lacks.

    Checked before the first call, so a typo such as ``{questoin}`` is one error line,
    not one failed query per item."""
    import difflib

    templates = [("task.prompt", network.spec.task.prompt, ())]
    if network.spec.task.system:
        templates.append(("task.system", network.spec.task.system, ()))
    for name, node in network.walk():
        if getattr(node, "prompt", None):
            templates.append((f"nodes.{name}.prompt", node.prompt, NODE_FIELDS.get(node.kind, ())))
    problems: list[tuple[str, str, str]] = []
    first = next(iter(queries), None)
    if first is None:
        return problems
    for where, template, extra in templates:
        for name in dict.fromkeys(template_fields(template)):
            if name in extra:
                continue
            lacking = [q for q in queries if name not in q.fields and name not in ("id", "question")
                       and not (name == "choices" and q.choices)]
            if lacking:
                have = sorted(set(lacking[0].template_values()) | set(extra))
                close = difflib.get_close_matches(name, have, n=1)
                hint = (f"; did you mean {{{close[0]}}}?" if close else "") + f" (fields: {', '.join(have)})"
                if len(lacking) < len(queries):
                    hint += f"; {len(lacking)} of {len(queries)} queries lack it, e.g. '{lacking[0].id}'"
                problems.append((where, name, hint))
    return problems


class TemplateError(ValueError):
    """A template names a field the query does not have."""


def render(template: str, values: dict[str, Any]) -> str:
    """Format ``template`` with plain-name fields only (never evaluated; see spec.template_fields)."""
    names = template_fields(template)
    missing = [n for n in names if n not in values]
    if missing:
        raise TemplateError(f"the prompt uses {{{missing[0]}}} but the query has no field '{missing[0]}' "
                            f"(has: {', '.join(sorted(values))})")
    return template.format_map({n: values[n] for n in names})
