"""Recorded completions, replayed: re-analyse (re-vote, re-fit, re-route) at no model cost.

Two sources:

* a JSONL file, one line per prompt: ``{"prompt": "...", "completions": ["...", ...]}``;
  the sample drawn with seed ``s`` is ``completions[s]`` (a generator's sample i has seed
  ``seed + i``, 0-based by default), so a network replays exactly the samples recorded;
* an llmnet cache file (SQLite) written by an earlier run, with ``identity`` the recorded
  model's cache identity (``local:smollm2-135m``, ``openai:gpt-4o-mini``, ...): every
  request is looked up under the key the original run stored it by.

A sample that was never recorded is a loud ``BackendError`` naming the prompt and the
seed, never a made-up answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llmnet.backends.base import Backend, Completion, Request, Sample, estimate_tokens, request_key
from llmnet.errors import BackendError, DatasetError
from llmnet.tasks.jsonl import read_jsonl


def _read_recorded(path: Path) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        if isinstance(obj, DatasetError):
            raise obj
        if not isinstance(obj, dict) or set(obj) != {"prompt", "completions"}:
            raise DatasetError(f"{where}: expected an object with exactly 'prompt' and 'completions'")
        prompt, completions = obj["prompt"], obj["completions"]
        if not isinstance(prompt, str):
            raise DatasetError(f"{where}: 'prompt' must be a string")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise DatasetError(f"{where}: 'completions' must be a list of strings")
        if prompt in table:
            raise DatasetError(f"{where}: this prompt was already recorded on an earlier line")
        table[prompt] = completions
    return table


class ReplayBackend(Backend):
    supports_n = True

    def __init__(self, name: str, spec):
        super().__init__(name, spec)
        path = Path(spec.source)
        if not path.is_file():
            raise BackendError(f"model '{name}': replay source '{path}' is not a file")
        self._table: dict[str, list[str]] | None = None
        self._db: sqlite3.Connection | None = None
        if path.suffix == ".jsonl":
            self._table = _read_recorded(path)
        else:
            if not spec.identity:
                raise BackendError(f"model '{name}': replaying a cache file needs 'identity' (the recorded model's, "
                                   "e.g. local:smollm2-135m)")
            try:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
                self._db.execute("SELECT key, seed, text FROM samples LIMIT 1")
            except sqlite3.Error as exc:
                raise BackendError(f"model '{name}': '{path}' is not an llmnet cache: {exc}") from None

    @property
    def identity(self) -> str:
        return f"replay:{self.spec.source}:{self.spec.identity or ''}"

    def _recorded(self, request: Request, seed: int) -> str:
        if self._table is not None:
            completions = self._table.get(request.prompt)
            if completions is None or not 0 <= seed < len(completions):
                have = "no recording" if completions is None else f"{len(completions)} recorded"
                raise BackendError(f"model '{self.name}': no recorded completion for seed {seed} of prompt "
                                   f"{request.prompt[:60]!r} ({have})")
            return completions[seed]
        row = self._db.execute("SELECT text FROM samples WHERE key = ? AND seed = ?",
                               (request_key(self.spec.identity, request), seed)).fetchone()
        if row is None:
            raise BackendError(f"model '{self.name}': the cache holds no sample {seed} of prompt "
                               f"{request.prompt[:60]!r} for '{self.spec.identity}'")
        return row[0]

    async def complete(self, request: Request) -> Completion:
        texts = [self._recorded(request, request.seed + j) for j in range(request.n)]
        tokens = estimate_tokens(request.prompt)
        return Completion(tuple(Sample(t, tokens if j == 0 else 0, estimate_tokens(t)) for j, t in enumerate(texts)))

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
