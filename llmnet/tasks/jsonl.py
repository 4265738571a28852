"""Reading JSONL files safely: bounded lines, every parser failure as an error naming the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmnet.errors import DatasetError

MAX_LINE = 10_000_000


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or a DatasetError) for each non-blank line of a JSONL file.

    Reads line by line with a length cap (so ``/dev/zero`` or a 20 MB line cannot hang
    or exhaust memory), decodes each line on its own, and turns every parser failure
    (bad JSON, huge integers, absurd nesting) into a DatasetError naming the line.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        lineno = 0
        while True:
            raw = handle.readline(MAX_LINE + 1)
            if not raw:
                return
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line
                    raw = handle.readline(MAX_LINE + 1)
                yield lineno, DatasetError(f"{where}: line longer than {MAX_LINE} bytes")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, DatasetError(f"{where}: not UTF-8 text")
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
                if "\\u" in text and _has_lone_surrogate(value):
                    yield lineno, DatasetError(f"{where}: a string holds a lone surrogate escape (e.g. \\ud800): "
                                               "not valid Unicode text")
                    continue
                yield lineno, value
            except json.JSONDecodeError as exc:
                yield lineno, DatasetError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            except (ValueError, RecursionError) as exc:
                yield lineno, DatasetError(f"{where}: unreadable JSON ({type(exc).__name__}: {str(exc)[:80]})")


def _has_lone_surrogate(value: Any) -> bool:
    """True if a ``\\uD800``-style escape decoded to a lone surrogate anywhere in ``value``
    (JSON allows it; UTF-8 cannot store it, so the cache and results files would fail later)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
