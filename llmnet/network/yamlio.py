"""Safe YAML loading that remembers where every value came from.

Only plain YAML is accepted: the loader is a ``yaml.SafeLoader`` and any tag it does not
know (``!!python/object``, ``!include``, ...) is refused with the line and column. While
building the Python objects we record the source position of every mapping key and
sequence item, so later passes can report ``file:line:col: nodes.vote.inputs[0]: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmnet.errors import Problem, SpecError

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    """``("nodes", "vote", "inputs", 0)`` -> ``nodes.vote.inputs[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Positions:
    """Source positions of a loaded document, keyed by YAML path."""

    def __init__(self, file: str | None):
        self.file = file
        self._marks: dict[Path_, tuple[int, int]] = {}

    def add(self, path: Path_, node: yaml.Node) -> None:
        self._marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def lookup(self, path: Path_) -> tuple[int | None, int | None]:
        """Line and column of ``path`` or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self._marks:
                return self._marks[path]
            path = path[:-1]
        return self._marks.get((), (None, None))

    def problem(self, path: Path_, message: str) -> Problem:
        line, col = self.lookup(path)
        return Problem(self.file, format_path(path), message, line, col)


MAX_NODES = 200_000
MAX_FILE_BYTES = 4 * 1024 * 1024  # a network file is a few KB; anything past this is a mistake
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _build(node: yaml.Node, loader: yaml.SafeLoader, path: Path_, positions: Positions) -> Any:
    positions.add(path, node)
    if len(positions._marks) > MAX_NODES:
        raise SpecError(positions.problem((), f"document expands to more than {MAX_NODES} values (alias bomb?)"))
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise SpecError(positions.problem(path, f"YAML tag '{node.tag}' is not allowed: only plain YAML "
                                                f"(no !!python/... or custom tags)"))
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # '<<: *anchor' merges: those keys come first, explicit ones override
        merged = len(node.value) - explicit
        out: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = _build(key_node, loader, path + ("<key>",), positions)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError(positions.problem(path, f"mapping keys must be plain scalars, got {type(key).__name__}"))
            key = str(key) if not isinstance(key, str) else key
            if key in out and index >= merged and any(
                    k.value == key_node.value for k, _ in node.value[:merged]) and not any(
                    k.value == key_node.value for k, _ in node.value[merged:index]):
                del out[key]  # an explicit key overrides the same key merged in from an anchor
            if key in out:
                raise SpecError(positions.problem(path + (key,), f"duplicate key '{key}': each key may appear once"))
            out[key] = _build(value_node, loader, path + (key,), positions)
            positions.add(path + (key,), key_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loader, path + (i,), positions) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        # PyYAML's scalar constructors raise plain Python errors for e.g. `!!float` with no
        # value, impossible timestamps or integers longer than Python will parse
        raise SpecError(positions.problem(path, f"unreadable value ({type(exc).__name__}: {str(exc)[:80]})")) from None


def loads(text: str, file: str | None = None) -> tuple[Any, Positions]:
    """Parse one YAML document safely; return the data and its source positions.

    Raises SpecError (never a yaml exception) for syntax errors, unsafe tags, aliases
    that expand to huge documents, and non-mapping roots.
    """
    positions = Positions(file)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise SpecError(Problem(file, "", f"not a YAML text: {exc}".splitlines()[0])) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError(Problem(file, "", "the file is empty: a network needs at least 'nodes' and 'output'"))
        data = _build(root, loader, (), positions)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = (exc.problem or exc.context or "invalid YAML").strip()
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in what:
            what = f"{what}: only plain YAML is allowed (no !!python/... or custom tags)"
        raise SpecError(Problem(file, "", f"YAML syntax error: {what}", line, col)) from None
    except yaml.YAMLError as exc:
        raise SpecError(Problem(file, "", f"YAML error: {exc}")) from None
    except RecursionError:
        raise SpecError(Problem(file, "", "YAML document is nested too deeply")) from None
    finally:
        loader.dispose()
    return data, positions


def read_text_file(path: str | Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; a FIFO, a device (``/dev/zero``)
    or a huge file is refused before it is opened, so it can neither hang nor fill memory."""
    import os
    import stat

    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe or a device?)"
            raise SpecError(Problem(str(path), "", f"cannot read file: it is {kind}; give the path of a YAML file"))
        if info.st_size > limit:
            raise SpecError(Problem(str(path), "", f"this {what} has {info.st_size:,} bytes, more than the "
                                                   f"{limit:,} a network file may have"))
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise SpecError(Problem(str(path), "", "cannot read file: no such file")) from None
    except OSError as exc:
        raise SpecError(Problem(str(path), "", f"cannot read file: {exc.strerror or exc}")) from None
    if len(raw) > limit:
        raise SpecError(Problem(str(path), "", f"this {what} grew past {limit:,} bytes while being read"))
    return raw


def load_file(path: str | Path) -> tuple[Any, Positions]:
    path = Path(path)
    raw = read_text_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(Problem(str(path), "", f"not UTF-8 text (byte {exc.start}): save the file as UTF-8")) from None
    return loads(text, str(path))


def dumps(data: Any) -> str:
    """Dump plain data as block-style YAML, keys in insertion order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
