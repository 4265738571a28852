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
        if conversion or (spec and "{" in spec):
            raise ValueError(f"template field '{{{field}}}' may not use conversions or nested fields")
        names.append(field)
    return tuple(names)


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
