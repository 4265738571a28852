"""Batch files: the calls a run needs, as OpenAI Batch API JSONL, and the answers back into the cache.

``export_requests`` runs the network with every model call *recorded instead of made*:
the ordinary executor walks each query, takes what the per-sample cache already holds
and, for every sample it lacks, writes one Batch API input line
(``{"custom_id", "method": "POST", "url": "/v1/chat/completions" | "/v1/completions",
"body"}``) whose body is byte for byte the request the backend would send. A backend that
takes ``n`` (``vllm``, ``openai`` with ``supports_n``) gets one line per missing run of
seeds with ``n``; any other gets one line per sample seed. The same file runs with
``vllm run-batch -i requests.jsonl -o outputs.jsonl`` and with a provider's batch API.

``import_outputs`` reads the provider's output (and error) lines: every answered sample is
stored under the cache key and seed its ``custom_id`` names, exactly as a live call would
have stored it; an error line, or a line whose status is not 2xx, stores nothing and is
counted, so the next export asks for those samples again. After the import, ``llmnet run``
with the same network, data and cache makes no call for them.

Calls that depend on earlier answers (a judge reads the generator's candidates, a gate's
branch depends on its router) cannot be known before those answers exist: such a query
stops at its first missing sample. Export, import and export again until export writes no
line (``ExportReport.blocked`` says how many queries still wait).

``custom_id`` is ``llmnet:<cache key>:<first seed>`` (``:j`` appended when the answer is
the ``{"answer": ...}`` JSON of a constrained choice), so an import needs nothing but the
output file and the cache.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmnet.backends import make_backend
from llmnet.backends.base import Backend, Completion, Request
from llmnet.errors import BackendError, DatasetError, LlmnetError
from llmnet.execute.cache import SampleCache, request_key
from llmnet.execute.engine import Engine
from llmnet.network.graph import Network
from llmnet.tasks.query import Query

ID_PREFIX = "llmnet"
URLS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
BATCH_BACKENDS = ("openai", "vllm")


class _Deferred(BackendError):
    """Raised by the recorder in place of a call: this sample will come from a batch file."""

    retryable = False


@dataclass
class ExportReport:
    lines: int = 0                 # request lines written
    samples: int = 0               # samples those lines ask for
    queries: int = 0               # queries looked at
    complete: int = 0              # queries the cache already answers completely
    blocked: int = 0               # queries that wait for at least one exported sample
    per_model: dict[str, int] = field(default_factory=dict)  # samples asked, by model name


@dataclass
class ImportReport:
    lines: int = 0
    samples: int = 0               # samples stored in the cache
    errors: int = 0                # error lines and non-2xx responses (nothing stored)
    foreign: int = 0               # lines whose custom_id llmnet did not write (ignored)
    first_errors: list[str] = field(default_factory=list)


class _Recorder(Backend):
    """Stands in for a real backend: turns each call into a batch line and raises ``_Deferred``."""

    def __init__(self, real: Backend, lines: dict[str, dict[str, Any]], counts: dict[str, int]):
        super().__init__(real.name, real.spec)
        self.real, self.lines, self.counts = real, lines, counts
        self.supports_n = real.supports_n

    @property
    def identity(self) -> str:
        return self.real.identity

    async def complete(self, request: Request) -> Completion:
        key = request_key(self.real.identity, request)
        unwrap = request.choices is not None and bool(self.real.choice_constraint(request)) and \
            self.real.choice_text('{"answer": "x"}', request) == "x"
        custom_id = f"{ID_PREFIX}:{key}:{request.seed}" + (":j" if unwrap else "")
        if custom_id not in self.lines:
            self.lines[custom_id] = {"custom_id": custom_id, "method": "POST", "url": URLS[request.api],
                                     "body": self.real.batch_body(request)}
            self.counts[self.name] = self.counts.get(self.name, 0) + request.n
        raise _Deferred(f"model '{self.name}': sample {request.seed} is exported to the batch file")

    async def aclose(self) -> None:
        await self.real.aclose()


def _real_backends(network: Network, backends: dict[str, Backend] | None) -> dict[str, Backend]:
    used = network.models_used()
    out: dict[str, Backend] = {}
    for name, spec in network.spec.models.items():
        if name not in used:
            continue
        if backends and name in backends:
            out[name] = backends[name]
            continue
        if spec.backend not in BATCH_BACKENDS:
            raise LlmnetError(f"model '{name}' uses backend '{spec.backend}', which has no batch API "
                              f"(batch files are for {' and '.join(BATCH_BACKENDS)} models)")
        out[name] = make_backend(name, spec)
    return out


async def aexport_requests(network: Network, queries: list[Query], out_path: Path, cache_path: Path | None,
                           concurrency: int = 64, backends: dict[str, Backend] | None = None) -> ExportReport:
    """Write the batch lines for every sample ``queries`` need and the cache lacks (see the module doc)."""
    if len({q.id for q in queries}) != len(queries):
        raise DatasetError("query ids must be unique")
    lines: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    recorders = {name: _Recorder(real, lines, counts) for name, real in _real_backends(network, backends).items()}
    cache = SampleCache(cache_path) if cache_path else None
    engine = Engine(network, cache, None, 0, recorders)
    report = ExportReport(queries=len(queries))
    todo = iter(queries)

    async def worker() -> None:
        for query in todo:
            record = await engine.run_query(query)
            error = record.get("error") or ""
            if _Deferred.__name__ in error:
                report.blocked += 1
            elif not error:
                report.complete += 1
            else:
                raise LlmnetError(f"query '{query.id}' failed while collecting its requests: {error}")

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(queries))))))
    finally:
        await engine.aclose()
        if cache is not None:
            cache.close()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines.values():
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    report.lines = len(lines)
    report.samples = sum(counts.values())
    report.per_model = dict(sorted(counts.items()))
    return report


def export_requests(network: Network, queries: list[Query], out_path: Path, cache_path: Path | None,
                    concurrency: int = 64, backends: dict[str, Backend] | None = None) -> ExportReport:
    """Blocking :func:`aexport_requests`."""
    return asyncio.run(aexport_requests(network, queries, Path(out_path), cache_path, concurrency, backends))


def parse_custom_id(custom_id: Any) -> tuple[str, int, bool] | None:
    """(cache key, first seed, unwrap a JSON choice) from an llmnet ``custom_id``; None for a foreign one."""
    if not isinstance(custom_id, str):
        return None
    parts = custom_id.split(":")
    if len(parts) not in (3, 4) or parts[0] != ID_PREFIX or len(parts[1]) != 64 or (len(parts) == 4 and parts[3] != "j"):
        return None
    try:
        return parts[1], int(parts[2]), len(parts) == 4
    except ValueError:
        return None


CLAIM_POLL_S = 0.05  # how often an import waiting for another process's claim on a key looks again


def import_outputs(path: Path, cache_path: Path) -> ImportReport:
    """Store every answered sample of a Batch API output file in the cache (see the module doc)."""
    from llmnet.backends.openai_compat import samples_from_body

    report = ImportReport()
    cache = SampleCache(cache_path)
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                report.lines += 1
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise DatasetError(f"{path}:{number}: not a JSON line") from None
                if not isinstance(line, dict):
                    raise DatasetError(f"{path}:{number}: expected a JSON object")
                parsed = parse_custom_id(line.get("custom_id"))
                if parsed is None:
                    report.foreign += 1
                    continue
                key, seed, unwrap = parsed
                problem = _line_error(line)
                if problem is not None:
                    report.errors += 1
                    if len(report.first_errors) < 5:
                        report.first_errors.append(f"{path}:{number}: {problem}")
                    continue
                try:
                    samples = samples_from_body(line["response"]["body"], unwrap)
                except (ValueError, TypeError, KeyError) as exc:
                    raise DatasetError(f"{path}:{number}: malformed response body ({exc})") from None
                while not cache.claim(key):  # a run is paying for this key: its rows go in first
                    time.sleep(CLAIM_POLL_S)
                try:
                    cache.put_many(key, [(seed + j, s) for j, s in enumerate(samples)])
                finally:
                    cache.release(key)
                report.samples += len(samples)
    finally:
        cache.close()
    return report


def _line_error(line: dict[str, Any]) -> str | None:
    """Why a line carries no answer, or None when it does."""
    error = line.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        return f"error: {message}"
    response = line.get("response")
    if not isinstance(response, dict):
        return "no response"
    status = response.get("status_code", 200)
    if not isinstance(status, int) or not 200 <= status < 300:
        body = response.get("body")
        message = body.get("error", body) if isinstance(body, dict) else body
        return f"HTTP {status}: {str(message)[:200]}"
    return None
