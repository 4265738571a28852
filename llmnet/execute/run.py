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
import json
import os
import secrets
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.errors import BudgetExceeded, CacheError, LlmnetError
from llmnet.execute.cache import SampleCache
from llmnet.execute.engine import Engine, query_fingerprint
from llmnet.execute.outdir import RESULTS, SUMMARY, atomic_write, open_run, run_identity
from llmnet.execute.totals import Totals
from llmnet.network.graph import Network
from llmnet.tasks.query import Query


@dataclass
class RunConfig:
    out_dir: Path | None = None
    cache_path: Path | None = None       # None: no cache
    concurrency: int = 64                # queries in flight at once
    max_cost: float | None = None        # dollars; the run stops cleanly before exceeding it
    progress: bool = False               # draw a rich progress bar (the CLI turns it on)
    seed: int = 0                        # seeds vote tie-breaks
    keep_results: bool = True            # keep result records in memory (off for huge runs)
    backends: dict[str, Any] | None = None  # Backend instances by model name, replacing the spec's
    overwrite: bool = False              # replace another run found in out_dir instead of refusing
    log: Callable[[str], None] | None = None  # one-line notes for the user (e.g. "resuming: ...")
    keep_text: bool = False              # store each sample's raw completion in the trace ("texts")
    ray: Any = None                      # shard queries over Ray: an address, "local" or RayOptions (execute.cluster)


@dataclass
class RunReport:
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)


async def arun(network: Network, queries: list[Query], config: RunConfig) -> RunReport:
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        from llmnet.errors import DatasetError

        raise DatasetError("query ids must be unique")
    run_id, done = secrets.token_hex(8), {}
    if config.out_dir is not None:  # before the cache: a refused folder leaves nothing behind
        run_id, done = _resume(network, queries, config)
    cache = SampleCache(config.cache_path) if config.cache_path else None
    engine = Engine(network, cache, config.max_cost, config.seed, config.backends) if config.ray is None \
        else _ray_engine(network, config)
    engine.run_id, engine.keep_text = run_id, config.keep_text
    totals, report = Totals(), RunReport({})
    out = None
    for line in done.values():
        rec = json.loads(line)
        totals.add(rec)
        if config.keep_results:
            report.results.append(rec)
    if config.out_dir is not None:
        out = (config.out_dir / RESULTS).open("a", encoding="utf-8")
    n_todo = len(queries) - len(done)
    stopped: str | None = None
    progress = _Progress(len(queries), len(done), config.progress)
    it = ((i, q) for i, q in enumerate(queries) if q.id not in done)
    written = _Written(out.tell() if out else 0)

    def write(index: int, line: str) -> None:
        out.write(line)
        out.flush()
        written.add(index, len(line))  # where the line is, not the line: memory stays flat

    # a line is written once the samples it used are in the cache (see llmnet.execute.commits)
    after_commit = getattr(engine, "after_commit", None) or (lambda fn: fn())

    def finish(index: int, rec: dict[str, Any]) -> None:
        totals.add(rec)
        if out:
            line = json.dumps(rec) + "\n"  # ASCII: any id or text, even a lone surrogate, is writable
            after_commit(lambda: write(index, line))
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
    except BaseException as exc:  # interrupted, or a damaged cache: stop every query, keep what finished
        stopped = "interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else str(exc)
        for task in workers:
            task.cancel()
        raise
    finally:
        progress.close()
        closing = None
        try:
            await engine.aclose()  # the last commits, and the result lines that waited for them
        except CacheError as exc:  # a commit failed: what depends on it was never written
            closing, stopped = exc, stopped or str(exc)
        if out:
            out.close()
        extra = {"complete": stopped is None and totals.queries >= len(queries),
                 "stopped": stopped, "max_in_flight": {m: l.max_in_flight for m, l in engine.models.items()},
                 **getattr(engine, "summary_extra", {})}
        report.summary = totals.summary(network.name, **extra)
        if config.out_dir is not None:  # dataset order: the resumed lines merged with this run's, by byte range
            earlier = sorted((i, done[q.id]) for i, q in enumerate(queries) if q.id in done) if done else []
            written.rewrite_in_order(config.out_dir / RESULTS, earlier, [])
            atomic_write(config.out_dir / SUMMARY, json.dumps(report.summary, indent=2) + "\n")
        if cache is not None:
            cache.close(wait=False)  # its samples are committed; SQLite's tidying at close goes on in a thread
        if closing is not None:
            raise closing
    if report.results:
        order = {qid: i for i, qid in enumerate(ids)}
        report.results.sort(key=lambda r: order.get(r["id"], 0))
    return report


def _ray_engine(network: Network, config: RunConfig) -> Any:
    from llmnet.execute.cluster import RayEngine, options_of

    if config.backends:
        raise LlmnetError("backends= cannot be shipped to Ray workers: give the models in the network spec")
    return RayEngine(network, options_of(config.ray), config.cache_path, config.max_cost, config.seed)


def _resume(network: Network, queries: list[Query], config: RunConfig) -> tuple[str, dict[str, str]]:
    """This run's id and its finished, answered results in ``config.out_dir`` (see ``outdir``)."""
    assert config.out_dir is not None
    fingerprints = [(q.id, query_fingerprint(q)) for q in queries]
    identity = run_identity(network.to_yaml(), fingerprints, config.seed, config.keep_text)
    run_id, kept = open_run(config.out_dir, identity, network.name, len(queries), config.overwrite)
    wanted = dict(fingerprints)
    done = {qid: line for qid, line in kept.items() if json.loads(line).get("qhash") == wanted.get(qid)}
    if config.log is not None and done:
        config.log(f"resuming: {len(done)} of {len(queries)} queries already finished")
    _rewrite_results(config.out_dir, [q.id for q in queries], done)  # drops the errored ones to retry
    return run_id, done


def _rewrite_results(out_dir: Path, ids: list[str], done: dict[str, str]) -> None:
    """results.jsonl = exactly the finished queries, in dataset order (atomic)."""
    lines = [done[qid] for qid in ids if qid in done]
    atomic_write(out_dir / RESULTS, "".join(line + "\n" for line in lines))


def run_network(network: Network, queries: list[Query], config: RunConfig | None = None) -> RunReport:
    """Run ``network`` on ``queries`` (blocking); see ``RunConfig``."""
    box: list[RunReport] = []

    async def main() -> None:  # returns None: asyncio.run would otherwise repr the report on the way out
        box.append(await arun(network, queries, config or RunConfig()))

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
