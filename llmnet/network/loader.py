"""From YAML text to a validated ``NetworkSpec``, in small pure passes.

1. ``yamlio.loads``: safe YAML -> plain data + source positions;
2. ``resolve_includes``: ``subgraphs.X.include: other.yaml`` inlined (cycles refused);
3. ``substitute_params``: ``${K}`` replaced from ``params`` and ``--set`` overrides;
4. ``validate_spec``: pydantic, with its errors turned into one line per problem.

Each pass raises ``SpecError`` with every problem it found, each naming the file, the
line, the YAML path and a fix.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import pydantic

from llmnet.errors import Problem, SpecError
from llmnet.network import yamlio
from llmnet.network.spec import NetworkSpec
from llmnet.network.yamlio import Path_, Positions

PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_INCLUDE_DEPTH = 16


class SourceMap:
    """Finds the file and position of a path in a document assembled from several files."""

    def __init__(self, root: Positions):
        self._entries: list[tuple[Path_, Positions, Path_]] = [((), root, ())]
        self.templated: dict[Path_, str] = {}  # where ``${NAME}`` stood, so to_yaml can write it back

    def add(self, prefix: Path_, positions: Positions, file_prefix: Path_ = ()) -> None:
        self._entries.append((tuple(prefix), positions, tuple(file_prefix)))

    def problem(self, path: Path_, message: str) -> Problem:
        path = tuple(path)
        best = max((e for e in self._entries if path[: len(e[0])] == e[0]), key=lambda e: len(e[0]))
        prefix, positions, file_prefix = best
        if prefix:
            message += f" (included as {yamlio.format_path(prefix)})"
        return positions.problem(file_prefix + path[len(prefix) :], message)


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """' (known: a, b)' with a did-you-mean when one is close."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(sorted(known)) if known else "none"
    return f" (known: {listed}){hint}"


# ----------------------------------------------------------------------------- includes


def resolve_includes(data: Any, base: Path | None, sources: SourceMap, _stack: tuple[Path, ...] = ()) -> Any:
    """Inline every ``subgraphs.X.include`` of ``data`` (paths relative to ``base``)."""
    if not isinstance(data, dict) or not isinstance(data.get("subgraphs"), dict):
        return data
    problems: list[Problem] = []
    for sub_name, sub in list(data["subgraphs"].items()):
        if not isinstance(sub, dict) or "include" not in sub:
            continue
        where: Path_ = ("subgraphs", sub_name, "include")
        target = sub["include"]
        extra = sorted(set(sub) - {"include", "description"})
        if extra:
            problems.append(sources.problem(where, f"a subgraph with 'include' may not also have {extra}"))
            continue
        if not isinstance(target, str) or not target or "\x00" in target:
            problems.append(sources.problem(where, "include needs a file path (relative to this file)"))
            continue
        path = (base / target) if base is not None else Path(target)
        path = path.resolve()
        if path in _stack or len(_stack) >= MAX_INCLUDE_DEPTH:
            chain = " -> ".join(p.name for p in (*_stack, path))
            problems.append(sources.problem(where, f"include cycle: {chain}; remove one of these includes"))
            continue
        try:
            inc_data, inc_pos = yamlio.load_file(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(inc_data, dict):
            problems.append(inc_pos.problem((), "an included file must be a mapping with 'nodes' and 'output'"))
            continue
        inc_sources = SourceMap(inc_pos)
        try:
            inc_data = resolve_includes(inc_data, path.parent, inc_sources, (*_stack, path))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        prefix: Path_ = ("subgraphs", sub_name)
        sources.add(prefix, inc_pos)
        data["subgraphs"][sub_name] = {
            k: v for k, v in {"description": sub.get("description") or inc_data.get("description"),
                              "nodes": inc_data.get("nodes"), "output": inc_data.get("output")}.items()
            if v is not None
        }
        for section in ("models", "subgraphs", "params"):
            incoming = inc_data.get(section) or {}
            if not isinstance(incoming, dict):
                continue
            mine = data.setdefault(section, {})
            if not isinstance(mine, dict):
                continue
            for key, value in incoming.items():
                if section == "params" and key in mine:
                    continue  # the including file's defaults win
                if key in mine and mine[key] != value:
                    problems.append(inc_pos.problem((section, key), f"{section[:-1]} '{key}' is defined differently "
                                                    f"in {sources.problem((), '').file}; rename one of them"))
                    continue
                if key not in mine:
                    mine[key] = value
                    sources.add((section, key), inc_pos, (section, key))
    if problems:
        raise SpecError(problems)
    return data


# ----------------------------------------------------------------------------- parameters


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["K=15", "T=0.2"]`` -> ``{"K": 15, "T": 0.2}`` (values typed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SpecError(Problem("--set", "", f"'{item}' is not NAME=VALUE (e.g. --set K=15)"))
        try:
            value, _ = yamlio.loads(raw or "''")
        except SpecError:
            value = raw
        if isinstance(value, (dict, list)) or value is None:
            value = raw
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            value = float(value)  # a string that a number field would read as NaN or infinity
        out[name] = value
    return out


def _used_params(data: Any) -> set[str]:
    if isinstance(data, str):
        return set(PARAM_RE.findall(data))
    if isinstance(data, dict):
        return set().union(*(_used_params(v) for v in data.values())) if data else set()
    if isinstance(data, list):
        return set().union(*(_used_params(v) for v in data)) if data else set()
    return set()


_KIND = {int: "whole number", float: "number", str: "text"}


def _non_finite(node: Any, path: Path_, sources: SourceMap) -> list[Problem]:
    """NaN and infinity where a number is meant ('.nan' is valid YAML but no valid setting)."""
    if isinstance(node, float) and not math.isfinite(node) and path not in sources.templated:
        return [sources.problem(path, f"{node} is not a finite number; give a finite number")]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _non_finite(v, path + (k,), sources)]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _non_finite(v, path + (i,), sources)]
    return []


def substitute_params(data: Any, sources: SourceMap, overrides: dict[str, Any] | None = None) -> Any:
    """Replace ``${NAME}`` everywhere but in ``params``.

    A value that is exactly ``${K}`` takes the parameter's type (``samples: ${K}`` is an
    int); inside a longer string it is formatted as text. Unset parameters and
    overrides of parameters that nothing uses are errors.
    """
    if not isinstance(data, dict):
        return data
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise SpecError(sources.problem(("params",), "params must be a mapping NAME: default"))
    body = {k: v for k, v in data.items() if k != "params"}
    used = _used_params(body)
    overrides = dict(overrides or {})
    problems = [
        Problem("--set", name, f"no parameter '{name}' in this network" + suggest(name, sorted(used | set(params))))
        for name in overrides if name not in used and name not in params
    ]
    for name, value in overrides.items():
        default = params.get(name)
        if isinstance(value, bool) and default is not None and not isinstance(default, bool):
            problems.append(Problem("--set", name, f"--set {name}={str(value).lower()}: {name} is not a yes/no "
                                                   f"value here (its default is {default!r}); give a "
                                                   f"{_KIND.get(type(default), 'value like the default')}"))
    values = {**params, **overrides}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            where = Problem("--set", name, "") if name in overrides else None
            message = f"parameter {name} is {value}: give a finite number"
            problems.append(Problem("--set", name, message) if where else sources.problem(("params", name), message))

    def sub(node: Any, path: Path_) -> Any:
        if isinstance(node, dict):
            return {k: sub(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [sub(v, path + (i,)) for i, v in enumerate(node)]
        if not isinstance(node, str) or "${" not in node:
            return node
        missing = [n for n in PARAM_RE.findall(node) if n not in values]
        for n in missing:
            problems.append(sources.problem(path, f"parameter ${{{n}}} is not set; add 'params: {{{n}: ...}}' "
                                                  f"or pass --set {n}=VALUE"))
        if missing:
            return node
        sources.templated[path] = node
        whole = PARAM_RE.fullmatch(node)
        if whole:
            return values[whole.group(1)]
        return PARAM_RE.sub(lambda m: str(values[m.group(1)]), node)

    result = sub(body, ())
    problems.extend(_non_finite(result, (), sources))
    if problems:
        raise SpecError(problems)
    if values:
        result["params"] = values
    return result


# ----------------------------------------------------------------------------- pydantic


def pydantic_problem(err: dict[str, Any], data: Any, sources: SourceMap) -> Problem:
    """One pydantic error as a Problem with a path that matches the YAML."""
    loc: list[str | int] = []
    node = data
    for part in err["loc"]:
        # tagged unions add the tag ("vote", "local", ...) to the location: skip it
        if isinstance(node, dict) and isinstance(part, str) and part not in node and \
                node.get("kind", node.get("backend")) == part:
            continue
        if isinstance(part, str) and part.startswith("function-"):
            continue
        loc.append(part)
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    typ, msg = err["type"], err["msg"]
    path = tuple(loc)
    if typ == "extra_forbidden":
        parent = path[:-1]
        model = _model_at(parent, data)
        allowed = sorted(model.model_fields) if model else []
        return sources.problem(path, f"unknown key '{path[-1]}'" + suggest(str(path[-1]), allowed))
    if typ == "missing":
        return sources.problem(path, f"missing required key '{path[-1]}'")
    if typ == "union_tag_invalid":
        tag = err.get("ctx", {}).get("discriminator", "kind").strip("'")
        expected = err.get("ctx", {}).get("expected_tags", "")
        got = err.get("ctx", {}).get("tag", "")
        known = re.findall(r"'([^']*)'", expected)
        return sources.problem(path + (tag,), f"unknown {tag} '{got}'" + suggest(str(got), known) if known
                               else f"unknown {tag} '{got}' (known: {expected})")
    if typ == "union_tag_not_found":
        tag = err.get("ctx", {}).get("discriminator", "kind").strip("'")
        return sources.problem(path, f"missing '{tag}': say which {tag} this is")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    shown = f" (got {got!r:.60})" if typ.endswith("_type") and not isinstance(got, (dict, list)) else ""
    return sources.problem(path, msg[0].lower() + msg[1:] + shown)


def _model_at(path: Path_, data: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model class that validates the mapping at ``path`` (for key hints)."""
    from llmnet.network import spec as S

    kinds = S.node_kinds()
    backends = {"local": S.LocalModel, "simulated": S.SimulatedModel, "openai": S.OpenAIModel, "vllm": S.VllmModel}
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if not path:
        return S.NetworkSpec
    if not isinstance(node, dict):
        return None
    if "kind" in node and path[-2:-1] == ("nodes",):
        return kinds.get(node["kind"])
    if "backend" in node:
        return backends.get(node["backend"])
    last = path[-1]
    simple = {"task": S.TaskSpec, "answer": S.AnswerSpec, "price": S.Price, "limits": S.Limits}
    if last in simple:
        return simple[last]
    if path[-2:-1] == ("subgraphs",):
        return S.SubgraphSpec
    if last == "router":
        from llmnet.routing import specs as R

        return {"rule": R.RuleRouterSpec, "complexitynet": R.ComplexityNetRouterSpec,
                "smart": R.SmartRouterSpec}.get(node.get("kind"))
    return None


def validate_spec(data: Any, sources: SourceMap) -> NetworkSpec:
    if not isinstance(data, dict):
        raise SpecError(sources.problem((), "a network file must be a mapping with 'nodes' and 'output'"))
    try:
        return NetworkSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = [pydantic_problem(e, data, sources) for e in exc.errors()]
        raise SpecError(list(dict.fromkeys(problems))) from None


# ----------------------------------------------------------------------------- entry points


def load_spec_data(data: Any, positions: Positions, base: Path | None,
                   overrides: dict[str, Any] | None = None) -> tuple[NetworkSpec, SourceMap]:
    sources = SourceMap(positions)
    data = resolve_includes(data, base, sources)
    data = substitute_params(data, sources, overrides)
    return validate_spec(data, sources), sources


def load_spec_text(text: str, file: str | None = None, overrides: dict[str, Any] | None = None,
                   base: Path | None = None) -> tuple[NetworkSpec, SourceMap]:
    data, positions = yamlio.loads(text, file)
    return load_spec_data(data, positions, base, overrides)


def load_spec_file(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[NetworkSpec, SourceMap]:
    data, positions = yamlio.load_file(path)
    return load_spec_data(data, positions, Path(path).resolve().parent, overrides)


def restore_templates(data: dict[str, Any], templated: dict[Path_, str]) -> dict[str, Any]:
    """Put ``${NAME}`` back where it stood (``data`` has the resolved values), so that a saved
    network still takes ``--set``; its ``params`` hold the values used as defaults."""
    for path, original in templated.items():
        node: Any = data
        for part in path[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
                break
        if isinstance(node, dict):
            node[path[-1]] = original
        elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
            node[path[-1]] = original
    return data
