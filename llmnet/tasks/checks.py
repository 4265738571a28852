"""Tests whose verdict the parent computes: ``assert <call> == <literal>``.

A program run in the sandbox shares its interpreter with the prelude that runs the tests,
so whatever the prelude decides there, the program can forge (walk frames to the reporter,
return an object whose ``__eq__`` is always true, exit early, patch ``hash``...). For the
commonest test form, MBPP's ``assert f(x) == expected`` and the asserts inside HumanEval's
``check(candidate)``, the sandbox therefore sends the child only the call (``f(x)``), never
the expected value; the child returns the call's value as plain data (``None``, bool, int,
float, str and lists, tuples, dicts, sets of them: anything else is a failure), and the
parent compares it with the expected value, which never entered the sandbox. A program can
then pass only by returning the right values. Tests of any other form keep the in-child
verdict and are marked ``weak``.
"""

from __future__ import annotations

import ast
import functools
import json
import threading
from dataclasses import dataclass
from typing import Any

_NOT_LITERAL = object()
# CPython 3.11's AST validation is not thread-safe (parallel ast.parse can raise SystemError)
_PARSE_LOCK = threading.Lock()


@dataclass(frozen=True)
class EqualityTest:
    """A test split into the calls the child evaluates and the values the parent expects."""

    calls: tuple[str, ...]
    expected: tuple[Any, ...]


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression (``ast.literal_eval``, plus ``set()``,
    ``set([...])``, ``frozenset(...)``, ``tuple(...)`` and ``list(...)`` of literals and
    ``float('inf'/'nan')``), else ``_NOT_LITERAL``."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords \
            and len(node.args) <= 1:
        kinds = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list,
                 "float": float}
        make = kinds.get(node.func.id)
        if make is None:
            return _NOT_LITERAL
        if not node.args:
            return make() if make is not float else _NOT_LITERAL
        inner = _literal(node.args[0])
        if inner is _NOT_LITERAL:
            return _NOT_LITERAL
        if make is float:
            return float(inner) if isinstance(inner, str) and inner.strip().lower().lstrip(
                "+-") in ("inf", "infinity", "nan") else _NOT_LITERAL
        try:
            return make(inner)
        except TypeError:
            return _NOT_LITERAL
    return _NOT_LITERAL


def _split_assert(stmt: ast.stmt) -> tuple[ast.expr, Any] | None:
    """``assert A == B`` with one side a literal: (the other side, the literal's value)."""
    if not isinstance(stmt, ast.Assert):
        return None
    test = stmt.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    left, right = test.left, test.comparators[0]
    for call, other in ((left, right), (right, left)):
        value = _literal(other)
        if value is not _NOT_LITERAL and _literal(call) is _NOT_LITERAL:
            return call, value
    return None


def _is_noop(stmt: ast.stmt) -> bool:
    """A docstring, ``pass``, or ``assert True`` (HumanEval's debugging asserts)."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True
    return isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) \
        and stmt.test.value is True


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.new, node.ctx) if node.id == self.old else node


def _check_function(tree: ast.Module) -> tuple[ast.FunctionDef, str] | None:
    """HumanEval's shape: constant assignments, ``def check(candidate): ...`` and a final
    ``check(<name>)``; returns the function and the name it is called with."""
    *head, last = tree.body
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and isinstance(last.value.func, ast.Name) and len(last.value.args) == 1
            and isinstance(last.value.args[0], ast.Name) and not last.value.keywords):
        return None
    name, target = last.value.func.id, last.value.args[0].id
    defs = [s for s in head if isinstance(s, ast.FunctionDef) and s.name == name]
    rest = [s for s in head if s not in defs]
    if len(defs) != 1 or len(defs[0].args.args) != 1 or not all(
            isinstance(s, ast.Assign) and _literal(s.value) is not _NOT_LITERAL or _is_noop(s)
            for s in rest):
        return None
    return defs[0], target


@functools.lru_cache(maxsize=4096)
def split_equality_test(source: str) -> EqualityTest | None:
    """The calls and expected values of a test made only of ``assert <expr> == <literal>``
    statements (MBPP), or of a HumanEval ``check`` function of such asserts followed by
    ``check(<entry point>)``; ``None`` for any other test (it stays a weak, in-child test)."""
    with _PARSE_LOCK:
        try:
            return _split(ast.parse(source))
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None


def _split(tree: ast.Module) -> EqualityTest | None:
    body, rename = tree.body, None
    if body and not any(isinstance(s, ast.Assert) for s in body):
        found = _check_function(tree)
        if found is None:
            return None
        func, target = found
        body, rename = func.body, _Rename(func.args.args[0].arg, target)
    calls, expected = [], []
    for stmt in body:
        if _is_noop(stmt):
            continue
        split = _split_assert(stmt)
        if split is None:
            return None
        call, value = split
        if rename is not None:
            call = rename.visit(call)
        calls.append(ast.unparse(call))
        expected.append(value)
    if not calls:
        return None
    return EqualityTest(tuple(calls), tuple(expected))


def decode_value(text: str) -> Any:
    """A value the child sent (tagged JSON: ``{"tuple": [...]}``, ``{"set": ...}``,
    ``{"frozenset": ...}``, ``{"dict": [[k, v], ...]}``, ``{"float": "nan"}``) as Python data.
    Raises ``ValueError`` on anything else."""
    return _decode(json.loads(text))


def _decode(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        (tag, inner), = v.items()
        if tag == "float" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag in ("tuple", "set", "frozenset") and isinstance(inner, list):
            items = [_decode(x) for x in inner]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict" and isinstance(inner, list) and all(
                isinstance(p, list) and len(p) == 2 for p in inner):
            return {_decode(k): _decode(x) for k, x in inner}
    raise ValueError(f"not a value the sandbox sends: {str(v)[:80]}")


def values_equal(got: Any, expected: Any) -> bool:
    """``got == expected`` on plain data, as the assert would have it (a NaN is never equal)."""
    try:
        return bool(got == expected)
    except (TypeError, ValueError, RecursionError):
        return False


__all__ = ["EqualityTest", "decode_value", "split_equality_test", "values_equal"]
