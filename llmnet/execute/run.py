"""Running a network over a dataset: streaming results, resume after a crash, the summary.

``DIR/results.jsonl`` gets one line per finished query, flushed as it finishes. Started
again after ``kill -9``, a run reads what is there (a torn last line is dropped), skips
the finished queries and, through the per-sample cache, pays for no sample twice. At the
end the file is rewritten (atomically) in dataset order, so an interrupted-and-resumed
run and an uninterrupted one give the same file. ``DIR/summary.json`` holds the totals
and the per-node and per-model breakdowns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.errors import BudgetExceeded, LlmnetError
from llmnet.execute.cache import SampleCache
from llmnet.execute.engine import Engine, query_fingerprint
from llmnet.execute.usage import Usage
from llmnet.network.graph import Network
from llmnet.tasks.query import Query

RESULTS, SUMMARY, FINGERPRINT = "results.jsonl", "summary.json", "run.json"


def network_fingerprint(network: Network) -> str:
    return hashlib.sha256(network.to_yaml().encode()).hexdigest()[:16]


def _check_resumable(out_dir: Path, network: Network, queries: list[Query], done: dict[str, str]) -> dict[str, str]:
    """Keep only finished results that belong to this network and these queries; refuse a foreign DIR."""
    fp_path = out_dir / FINGERPRINT
    mine = network_fingerprint(network)
    if fp_path.exists():
        try:
            theirs = json.loads(fp_path.read_text()).get("network")
        except (ValueError, OSError, AttributeError):
            theirs = None
        if theirs != mine and done:
            raise LlmnetError(f"{out_dir} holds results of a different network; use another --out "
                              f"(or delete {out_dir / RESULTS} to start over)")
    by_id = {q.id: query_fingerprint(q) for q in queries if q.id in done} if done else {}
    kept = {}
    for qid, line in done.items():
        if qid not in by_id:
            continue  # a query of a larger earlier run: kept in the file, not in this summary
        if json.loads(line).get("qhash") != by_id[qid]:
            raise LlmnetError(f"{out_dir / RESULTS} holds a different query with id '{qid}' (another dataset?); "
                              f"use another --out")
        kept[qid] = line
    _atomic_write(fp_path, json.dumps({"network": mine, "name": network.name}) + "\n")
    return kept


@dataclass
class RunConfig:
    out_dir: Path | None = None
    cache_path: Path | None = None       # None: no cache
    concurrency: int = 64                # queries in flight at once
    max_cost: float | None = None        # dollars; the run stops cleanly before exceeding it
    progress: bool = True
    seed: int = 0                        # seeds vote tie-breaks
    keep_results: bool = True            # keep result records in memory (off for huge runs)
    backends: dict[str, Any] | None = None  # Backend instances by model name, replacing the spec's
    ray: Any = None                      # shard queries over Ray: an address, "local" or RayOptions (execute.cluster)


@dataclass
class RunReport:
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)


class Totals:
    """Summary statistics accumulated one result record at a time (constant memory)."""

    def __init__(self) -> None:
        self.queries = self.graded = self.correct = self.errors = 0
        self.total = Usage()
        self.per_node: dict[str, Usage] = {}
        self.per_model: dict[str, Usage] = {}
        self.branches: dict[str, dict[str, int]] = {}
        self.programs = self.weak_passes = 0    # sandboxed programs; passes judged in-child

    def add(self, rec: dict[str, Any]) -> None:
        self.queries += 1
        self.errors += rec.get("error") is not None
        if rec.get("correct") is not None:
            self.graded += 1
            self.correct += bool(rec["correct"])
        for node, entry in rec.get("trace", {}).items():
            u = entry.get("usage")
            if u is not None:
                for bucket in (self.per_node.setdefault(node, Usage()),
                               self.per_model.setdefault(entry["model"], Usage()), self.total):
                    bucket.add_dict(u)
            for status in entry.get("sandbox", ()):
                self.programs += 1
                self.weak_passes += status == "passed (weak)"
            if "branch" in entry:
                counts = self.branches.setdefault(node, {})
                counts[entry["branch"]] = counts.get(entry["branch"], 0) + 1

    def summary(self, network: Network, **extra: Any) -> dict[str, Any]:
        t = self.total
        return {
            "network": network.name,
            "queries": self.queries,
            "accuracy": round(self.correct / self.graded, 6) if self.graded else None,
            "correct": self.correct,
            "graded": self.graded,
            "errors": self.errors,
            "calls": t.calls,
            "attempts": t.attempts,
            "retries": t.attempts - t.calls,
            "samples": t.samples,
            "cache_hits": t.cache_hits,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "cost_usd": round(t.cost_usd, 10),
            "cached_tokens": t.cached_tokens,
            "cached_cost_usd": round(t.cached_cost_usd, 10),
            "server_cached_tokens": t.server_cached_tokens,
            "per_node": {k: v.to_dict() for k, v in sorted(self.per_node.items())},
            "per_model": {k: v.to_dict() for k, v in sorted(self.per_model.items())},
            "branches": self.branches,
            **({"sandbox": {"programs": self.programs, "weak_passes": self.weak_passes}}
               if self.programs else {}),
            **extra,
        }


def read_finished(path: Path) -> dict[str, str]:
    """Finished results (id -> line) of an earlier run; a torn last line is cut off the file."""
    done: dict[str, str] = {}
    if not path.exists():
        return done
    good_bytes = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
                done[str(rec["id"])] = raw.decode().rstrip("\n")
            except (ValueError, KeyError, TypeError):
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("rb+") as fh:
            fh.truncate(good_bytes)
    return done


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def arun(network: Network, queries: list[Query], config: RunConfig) -> RunReport:
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        from llmnet.errors import DatasetError

        raise DatasetError("query ids must be unique")
    cache = SampleCache(config.cache_path) if config.cache_path else None
    engine = Engine(network, cache, config.max_cost, config.seed, config.backends) if config.ray is None \
        else _ray_engine(network, config)
    totals, report = Totals(), RunReport({})
    out = None
    done: dict[str, str] = {}
    on_disk: dict[str, str] = {}
    if config.out_dir:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        results_path = config.out_dir / RESULTS
        on_disk = read_finished(results_path)
        done = _check_resumable(config.out_dir, network, queries, on_disk)
        for line in done.values():
            rec = json.loads(line)
            totals.add(rec)
            if config.keep_results:
                report.results.append(rec)
        out = results_path.open("a", encoding="utf-8")
    n_todo = len(queries) - len(done)
    stopped: str | None = None
    progress = _Progress(len(queries), len(done), config.progress)
    it = ((i, q) for i, q in enumerate(queries) if q.id not in done)
    written = _Written(out.tell() if out else 0)

    def finish(index: int, rec: dict[str, Any]) -> None:
        totals.add(rec)
        if out:
            line = json.dumps(rec) + "\n"  # ASCII: any id or text, even a lone surrogate, is writable
            out.write(line)
            out.flush()
            written.add(index, len(line))  # where the line is, not the line: memory stays flat
        if config.keep_results:
            report.results.append(rec)
        progress.advance(totals.total.cost_usd)

    async def worker() -> None:
        nonlocal stopped
        for i, q in it:  # workers share one iterator: at most `concurrency` queries in flight
            if stopped is not None:
                return
            try:
                finish(i, await engine.run_query(q))
            except BudgetExceeded as exc:
                stopped = str(exc)
                return

    workers: list[asyncio.Task] = []
    try:
        workers = [asyncio.ensure_future(worker()) for _ in range(min(config.concurrency, n_todo) or 1)]
        await asyncio.gather(*workers)
    except (asyncio.CancelledError, KeyboardInterrupt):
        stopped = "interrupted"
        for task in workers:
            task.cancel()
        raise
    finally:
        progress.close()
        await engine.aclose()
        if out:
            out.close()
        extra = {"complete": stopped is None and totals.queries >= len(queries),
                 "stopped": stopped, "max_in_flight": {m: l.max_in_flight for m, l in engine.models.items()},
                 **getattr(engine, "summary_extra", {})}
        report.summary = totals.summary(network, **extra)
        if config.out_dir:
            if stopped is None:
                earlier = sorted((i, done[q.id]) for i, q in enumerate(queries) if q.id in done) if done else []
                others = [line for qid, line in on_disk.items() if qid not in done]  # an earlier, larger run's
                written.rewrite_in_order(config.out_dir / RESULTS, earlier, others)
            _atomic_write(config.out_dir / SUMMARY, json.dumps(report.summary, indent=2) + "\n")
        if cache is not None:
            cache.close()
    if report.results:
        order = {qid: i for i, qid in enumerate(ids)}
        report.results.sort(key=lambda r: order.get(r["id"], 0))
    return report


def _ray_engine(network: Network, config: RunConfig) -> Any:
    from llmnet.execute.cluster import RayEngine, options_of

    if config.backends:
        raise LlmnetError("backends= cannot be shipped to Ray workers: give the models in the network spec")
    return RayEngine(network, options_of(config.ray), config.cache_path, config.max_cost, config.seed)


def run_network(network: Network, queries: list[Query], config: RunConfig | None = None) -> RunReport:
    """Run ``network`` on ``queries`` (blocking); see ``RunConfig``."""
    box: list[RunReport] = []

    async def main() -> None:  # returns None: asyncio.run would otherwise repr the report on the way out
        box.append(await arun(network, queries, config or RunConfig(progress=False)))

    asyncio.run(main())
    return box[0]


class _Written:
    """Where each result line of this run went in results.jsonl: (dataset index, offset, length).

    Three integer arrays instead of the lines themselves; at the end the file is put in
    dataset order by copying byte ranges (no JSON parsing), or left alone when it already is.
    """

    def __init__(self, start: int):
        self.index, self.offset, self.length = array("q"), array("q"), array("q")
        self.end = start

    def add(self, index: int, length: int) -> None:
        self.index.append(index)
        self.offset.append(self.end)
        self.length.append(length)
        self.end += length

    def rewrite_in_order(self, path: Path, earlier: list[tuple[int, str]], others: list[str]) -> None:
        """``path`` in dataset order: this run's lines merged with ``earlier`` (index, line), then ``others``."""
        idx = self.index
        if not earlier and not others and all(idx[j] < idx[j + 1] for j in range(len(idx) - 1)):
            return  # written in order already (e.g. a sequential run)
        order = np.argsort(np.frombuffer(idx, dtype=np.int64), kind="stable").tolist() if idx else []
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with path.open("rb") as src, tmp.open("wb") as dst:
            e = 0
            for j in order:
                while e < len(earlier) and earlier[e][0] < idx[j]:
                    dst.write(earlier[e][1].encode() + b"\n")
                    e += 1
                src.seek(self.offset[j])
                dst.write(src.read(self.length[j]))
            for _, line in earlier[e:]:
                dst.write(line.encode() + b"\n")
            for line in others:
                dst.write(line.encode() + b"\n")
        os.replace(tmp, path)


class _Progress:
    """A rich progress bar with the live cost; silent when disabled."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]queries"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("${task.fields[cost]:.4f}"), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("run", total=total, completed=done, cost=0.0)

    def advance(self, cost: float) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, cost=cost)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
