"""Sharding a run's queries over Ray workers (``RunConfig(ray=...)``, ``llmnet run --ray``).

Ray is an existing engine for exactly this (scheduling, placement, failure detection), so
llmnet only decides what travels:

- **Workers run the ordinary executor.** Each worker is a Ray actor holding an
  ``Engine`` over the same network; the driver sends it whole queries and gets back the
  result record the local executor would have written. A query's prompt picks its worker
  (rendezvous hashing, as for vLLM replicas), so queries that share a prompt share a
  worker and, as in a local run, one of them pays and the others hit the cache.
- **The driver owns the cache and ``results.jsonl``.** ``llmnet.execute.run.arun`` runs
  unchanged on the driver: it writes, resumes and orders results exactly as locally. The
  per-sample cache is opened by one actor pinned to the driver's node; workers read and
  write every sample through it, synchronously, before using it, so a sample paid on any
  node is on the driver's disk before the query goes on, and a killed worker (or driver)
  loses nothing it paid for.
- **Claims are real.** Before paying for a key a worker claims it through that actor, which
  takes the cache's claim lock (``SampleCache.claim``) for it: another process on the same
  cache (a second ``llmnet run``, a local run) waits for the worker's samples instead of
  paying again, and a worker waits for theirs (and for another worker's). The claim comes
  back with the key's rows, so it costs no round trip beyond the read it replaces; the
  release follows the worker's committed write, unawaited (``_CacheServer``, ``_RemoteCache``).
  A dead worker's claims are dropped when it is replaced.
- **Budgets are split and reported.** Each model's ``concurrency``, ``rpm`` and ``tpm`` and
  the run's ``max_cost`` are divided evenly over the workers (the concurrency parts sum to
  the model's, with at least 1 per worker); the summary's ``ray`` entry lists the shares, so the cluster as a whole stays
  within the model's limits.
- **A worker that dies is replaced.** A query whose worker died (node lost, process
  killed) is sent again, to the replacement; the samples it had paid are in the cache,
  so nothing is paid twice. After ``MAX_RESENDS`` deaths in a row for one query its error
  is recorded on it, like any other failure.
- **A bad address fails fast.** No address means ``$RAY_ADDRESS`` when set, else a new local
  Ray. An address is probed before ``ray.init`` (``probe``: TCP connect and the HTTP/2
  preface a gRPC head answers, 3 s at most), so a wrong host or port is one line within
  seconds instead of ``ray.init``'s 40 s and more of retries.

Results equal a local run's for the same seeds in every field but timings
(``latency_s``), also after a resume or a dead worker: every query is sent with the run's
``run_id`` (kept across resumes) and ``keep_text``, so a worker books the samples that an
earlier process of the same run (a killed driver's worker, a dead worker) paid for this
very query and node as paid, exactly as the local executor books a killed process's
samples (``Engine._book``). ``max_in_flight`` in the summary is the sum of the workers'
peaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmnet.backends.base import Sample
from llmnet.errors import BudgetExceeded, LlmnetError
from llmnet.execute.usage import Usage
from llmnet.network.graph import Network
from llmnet.network.templates import render
from llmnet.tasks.query import Query

MAX_RESENDS = 3
PREFETCH_SEEDS = 256  # a worker's claim brings the key's rows when the key has at most this many seeds
CONNECT_TIMEOUT_S = 3.0  # how long an address may take to answer before --ray gives up on it
INSTALL_HINT = "Ray is not installed: pip install 'llmnet-compound[ray]' (or pip install ray)"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` of a running cluster (HOST:PORT, ray://HOST:PORT or "auto"),
    "local" to start a new Ray here, or None for Ray's default (``$RAY_ADDRESS``, else a new local Ray);
    ``workers`` (default: the cluster's CPUs / ``cpus_per_worker``)."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0


def import_ray():
    try:
        import ray
    except ImportError:
        raise LlmnetError(INSTALL_HINT) from None
    return ray


def options_of(value: Any) -> RayOptions:
    """``RunConfig.ray`` as options: a RayOptions, an address string, or True / "" for Ray's default
    (``$RAY_ADDRESS`` when set, else a new local Ray); "local" always starts a new local Ray."""
    if isinstance(value, RayOptions):
        return value
    if value is True or value == "":
        return RayOptions()
    if isinstance(value, str):
        return RayOptions(address=value.strip())
    raise LlmnetError(f"ray= takes an address, 'local', True or RayOptions, not {value!r}")


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``ray://HOST:PORT`` as (host, port); LlmnetError otherwise."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LlmnetError(f"Ray address '{address}' is not HOST:PORT, ray://HOST:PORT, auto or local "
                          f"(bare --ray starts a local Ray)")
    return host, int(port)


# An HTTP/2 client's first bytes (RFC 9113 section 3.4): the preface and an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast unless ``address`` answers like a Ray head, within ``timeout`` seconds.

    ``ray.init`` on an address where nothing listens, or where something other than Ray does,
    retries for 40 s and more before it gives up (and a dropped packet can make it hang for
    minutes). Ray's head (GCS) and its client server (``ray://``) are gRPC servers, and a gRPC
    server answers the HTTP/2 connection preface with a SETTINGS frame; so: connect over TCP,
    send the preface, and expect a SETTINGS frame back. Raises LlmnetError with one line saying
    what failed.
    """
    import socket

    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        raise LlmnetError(f"cannot reach Ray at {address}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise LlmnetError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise LlmnetError(f"{address} is not a Ray cluster: something listens there, but it does not speak "
                          f"gRPC (give the head's address, e.g. HOST:6379, or ray://HOST:10001)")


def _address_to_probe(address: str) -> str | None:
    """The HOST:PORT ``ray.init(address)`` would connect to, or None when it starts a local Ray."""
    if address == "local":
        return None
    if address == "auto":
        try:  # where `ray start` recorded its head; a private helper, so only used when it is there
            from ray._private.services import canonicalize_bootstrap_address

            return canonicalize_bootstrap_address("auto")
        except Exception:
            return None  # ray.init says itself, at once, that it found no cluster
    return address


def concurrency_share(concurrency: int, workers: int, index: int) -> int:
    """Worker ``index``'s part of a model's ``concurrency``: the parts sum to it (at least 1 each)."""
    base, extra = divmod(concurrency, workers)
    return max(1, base + (1 if index < extra else 0))


def split_limits(spec: Any, workers: int, index: int) -> Any:
    """A model spec whose limits are worker ``index``'s share of the model's."""
    limits = spec.limits
    share = {"concurrency": concurrency_share(limits.concurrency, workers, index)}
    if limits.rpm:
        share["rpm"] = limits.rpm / workers
    if limits.tpm:
        share["tpm"] = limits.tpm / workers
    return spec.model_copy(update={"limits": limits.model_copy(update=share)})


def connect(address: str | None) -> bool:
    """Join or start Ray unless this process already is on one; True when this call did it.

    No address: ``$RAY_ADDRESS`` when set, else a new local Ray (never a cluster found by
    scanning this machine's processes, as ``ray.init()`` alone would: on a shared machine it
    may be anyone's). An address is probed first (``probe``), so a bad one fails in seconds.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    target = _address_to_probe(address)
    if target is not None:
        probe(target)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise LlmnetError(f"cannot start or join Ray at {address}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def _joined_address(ray: Any, address: str | None, started: bool) -> str:
    """What the summary calls the cluster: the address given, "local", or the head's address."""
    if address:
        return address
    if started and not os.environ.get("RAY_ADDRESS"):
        return "local"
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:
        return os.environ.get("RAY_ADDRESS") or "(joined before)"


@contextlib.contextmanager
def ray_session(value: Any) -> Iterator[None]:
    """Stay on Ray for several runs (a sweep's points): join or start it once, leave at the end.

    ``value`` as ``RunConfig.ray``; None: no Ray. Runs inside find Ray initialised and neither
    join nor shut it down.
    """
    started = value is not None and connect(options_of(value).address)
    try:
        yield
    finally:
        if started:
            import_ray().shutdown()


# ----------------------------------------------------------------------------- actors (defined lazily: ray is optional)


class _CacheServer:
    """The per-sample cache on the driver's node; every worker's samples and claims go through it.

    Claims: this actor's process takes the cache's claim lock on a key (``SampleCache.claim``: a
    POSIX lock on ``PATH-claims``, which only a process on the file's machine can hold) for the
    worker that asks, so another process on that cache (a second ``llmnet run``, a local run of
    the driver's) waits for a Ray worker's samples and a Ray worker for theirs. The lock belongs
    to this process, so it also keeps, per key, which worker holds it: another worker's claim on
    that key is refused too, and a dead worker's claims are dropped (``forget``).
    """

    def __init__(self, path: str):
        from llmnet.execute.cache import SampleCache

        self.cache = SampleCache(path)
        self.holders: dict[str, tuple[str, int]] = {}  # key -> (worker holding it, its claims on it)
        self.owned: dict[str, set[str]] = {}  # worker -> keys it holds

    def get_paid(self, key: str, seeds: list[int], owner: str = "", released: list[str] = ()) -> dict[int, tuple]:
        self.release_many(released, owner)
        return _flat_rows(self.cache.get_paid(key, seeds))

    def put_many(self, key: str, items: list[tuple[int, tuple]], paid_by: str, calls: int, attempts: int,
                 owner: str = "", released: list[str] = ()) -> None:
        self.cache.put_many(key, [(seed, Sample(*flat)) for seed, flat in items], paid_by, calls, attempts)
        self.release_many(released, owner)

    def claim(self, key: str, owner: str, released: list[str] = ()) -> tuple[bool, dict[int, tuple] | None]:
        """Claim ``key`` for worker ``owner``: (False, None) while another process or worker holds it;
        else (True, the key's cached rows), read in the same round trip because the worker's next
        step is to read them (None when the key has more than ``PREFETCH_SEEDS`` seeds: it asks then).
        ``released``: keys the worker gave up since its last call, released first (every call takes them)."""
        self.release_many(released, owner)
        held = self.holders.get(key)
        if held is not None:
            if held[0] != owner:
                return False, None
            self.holders[key] = (owner, held[1] + 1)
        else:
            if not self.cache.claim(key):
                return False, None
            self.holders[key] = (owner, 1)
            self.owned.setdefault(owner, set()).add(key)
        rows = self.cache.get_all(key, PREFETCH_SEEDS)
        return True, (None if rows is None else _flat_rows(rows))

    def release(self, key: str, owner: str) -> None:
        """Give up ``owner``'s claim on ``key`` (a worker calls it after its samples of the key are committed)."""
        held = self.holders.get(key)
        if held is None or held[0] != owner:  # dropped already (``forget``), or never held (this actor restarted)
            return
        if held[1] > 1:
            self.holders[key] = (owner, held[1] - 1)
            return
        del self.holders[key]
        self.owned.get(owner, set()).discard(key)
        self.cache.release(key)

    def release_many(self, keys: list[str], owner: str) -> None:
        for key in keys:
            self.release(key, owner)

    def forget(self, owner: str) -> int:
        """Drop every claim of worker ``owner`` (it died); how many keys it held."""
        keys = self.owned.pop(owner, set())
        for key in keys:
            if self.holders.pop(key, None) is not None:
                self.cache.release(key)
        return len(keys)

    def close(self) -> None:
        self.cache.close()


def _flat(s: Sample) -> tuple:
    return (s.text, s.prompt_tokens, s.completion_tokens, s.reasoning, s.cached_tokens, s.fingerprint,
            s.served_model)


def _flat_rows(rows: dict[int, tuple]) -> dict[int, tuple]:
    """``SampleCache.get_paid`` rows with each sample as plain data, to travel to a worker."""
    return {seed: (_flat(s), by, calls, att) for seed, (s, by, calls, att) in rows.items()}


class _RemoteCache:
    """What a worker's Engine sees as its cache: blocking calls to the cache actor (one writer).

    A claim is one round trip that also brings the key's rows, which the Engine reads next
    (``Engine.samples``: claim, then read, with no await between), so claiming costs no extra
    trip. A release travels with the worker's next call to the actor, or alone, unawaited, at
    the end of the event loop's turn when no call was made meanwhile: the samples it covers were
    committed by the blocking ``put_many`` before it, and the actor runs one caller's calls in order.
    """

    def __init__(self, server: Any, owner: str):
        import ray

        self._ray, self._server, self._owner = ray, server, owner
        self._rows: dict[str, dict[int, tuple]] = {}  # claimed keys' rows, read with the claim
        self._released: list[str] = []  # keys given up, not yet told to the actor
        self._flushing = False

    def _take(self) -> list[str]:
        released, self._released = self._released, []
        return released

    def _flush(self) -> None:
        self._flushing = False
        if self._released:
            self._server.release_many.remote(self._take(), self._owner)

    def get_paid(self, key: str, seeds) -> dict[int, tuple]:
        rows = self._rows.pop(key, None)
        if rows is None:
            rows = self._ray.get(self._server.get_paid.remote(key, list(seeds), self._owner, self._take()))
        else:
            rows = {seed: rows[seed] for seed in seeds if seed in rows}
        return {seed: (Sample(*f), by, calls, att) for seed, (f, by, calls, att) in rows.items()}

    def put_many(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
                 attempts: int = 0) -> None:
        self._ray.get(self._server.put_many.remote(key, [(seed, _flat(s)) for seed, s in items], paid_by, calls,
                                                   attempts, self._owner, self._take()))

    def claim(self, key: str) -> bool:
        """Claim ``key`` in the driver's cache for this worker; False while another process or worker holds it."""
        granted, rows = self._ray.get(self._server.claim.remote(key, self._owner, self._take()))
        if granted and rows is not None:
            self._rows[key] = rows
        return granted

    def release(self, key: str) -> None:
        self._rows.pop(key, None)
        self._released.append(key)
        if not self._flushing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop: nothing else will carry it
                self._flush()
                return
            self._flushing = True
            loop.call_soon(self._flush)

    def close(self) -> None:
        pass


class _ShardWorker:
    """A Ray actor running the ordinary executor on the queries it is sent.

    It holds one Engine per network it was given (a run has one; ComplexityNet labelling one
    per tier and trial), all sharing one set of backends, limits and cost budget.
    """

    def __init__(self, networks: list[Network], cache_server: Any, max_cost: float | None, seed: int, workers: int,
                 index: int, owner: str = ""):
        from llmnet.backends import make_backend
        from llmnet.execute.engine import Engine
        from llmnet.execute.limits import CostBudget, Limited

        used = set().union(*(net.models_used() for net in networks))
        specs = {name: spec for net in networks for name, spec in net.spec.models.items() if name in used}
        backends = {name: make_backend(name, split_limits(spec, workers, index)) for name, spec in specs.items()}
        cache = _RemoteCache(cache_server, owner) if cache_server is not None else None
        budget = CostBudget(None if max_cost is None else max_cost / workers)
        limited = {name: Limited(backend, budget) for name, backend in backends.items()}
        self.engines = [Engine(net, cache, None, seed, backends) for net in networks]
        self.engine = self.engines[0]
        self.engine.models, self.engine.budget = limited, budget
        for engine in self.engines[1:]:  # one set of limits, one budget and one set of prompt locks for all
            engine.share(self.engine)

    def pid(self) -> int:
        return os.getpid()

    async def run_query(self, query: Query, which: int = 0, run_id: str = "", keep_text: bool = False) -> dict[str, Any]:
        """Run ``query`` under the driver's ``run_id`` and ``keep_text``: the samples an earlier (killed)
        process of the same run paid for this query are booked as paid, as the local executor does;
        this worker's own ``session`` stays its own (a replacement worker is another process)."""
        engine = self.engines[which]
        if run_id:
            engine.run_id = run_id
        engine.keep_text = keep_text
        try:
            return await engine.run_query(query)
        except BudgetExceeded as exc:
            return {"__budget__": str(exc)}

    async def close(self) -> tuple[dict[str, int], str]:
        """Close the engine; its peak requests in flight per model and the node it ran on."""
        import ray

        peaks = {m: limited.max_in_flight for m, limited in self.engine.models.items()}
        await self.engine.aclose()
        return peaks, ray.get_runtime_context().get_node_id()


@dataclass
class _Peak:
    max_in_flight: int = 0


class RayEngine:
    """Stands in for ``Engine`` in ``arun``: ``run_query`` runs the query on a Ray worker."""

    def __init__(self, network: Network, options: RayOptions, cache_path: Any, max_cost: float | None, seed: int,
                 networks: list[Network] | None = None):
        """``networks``: several networks to run queries of (``run_query(q, which)``); default ``[network]``."""
        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.network, self.seed, self.max_cost = ray, network, seed, max_cost
        self.networks = list(networks or [network])
        if options.workers is not None and options.workers < 1:
            raise LlmnetError(f"Ray workers must be at least 1, not {options.workers}")
        self.started = connect(options.address)
        address = _joined_address(ray, options.address, self.started)
        cpus = ray.cluster_resources().get("CPU", 1)
        self.workers = options.workers or max(1, int(cpus // options.cpus_per_worker))
        self.cpus = options.cpus_per_worker
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.cache_server = None
        if cache_path is not None:
            # restarted and its calls retried if Ray kills it (e.g. its memory monitor): every
            # write is committed before it returns and INSERT OR IGNORE makes a retry harmless
            server = ray.remote(num_cpus=0, scheduling_strategy=here, max_restarts=-1,
                                max_task_retries=-1)(_CacheServer)
            self.cache_server = server.remote(str(os.path.abspath(cache_path)))
        self._worker_cls = ray.remote(num_cpus=self.cpus, max_restarts=0)(_ShardWorker)
        self.owners = [""] * self.workers  # each slot's worker, as the cache actor knows its claims
        self.slots = [self._spawn(i) for i in range(self.workers)]
        self.restarts = 0
        self.nodes: set[str] = set()
        self.models: dict[str, _Peak] = {m: _Peak() for net in self.networks for m in net.models_used()
                                         if m in net.spec.models}
        self.address = address
        self.run_id = secrets.token_hex(8)  # what Engine carries for who-paid accounting; arun sets the run's
        self.keep_text = False

    def _spawn(self, index: int) -> Any:
        self.owners[index] = f"{index}:{secrets.token_hex(4)}"
        return self._worker_cls.remote(self.networks, self.cache_server, self.max_cost, self.seed, self.workers, index,
                                       self.owners[index])

    def _slot(self, query: Query) -> int:
        from llmnet.backends.vllm import rendezvous_order

        prompt = render(self.network.spec.task.prompt, query.template_values())
        return rendezvous_order(prompt, [str(i) for i in range(self.workers)])[0]

    async def run_query(self, query: Query, which: int = 0) -> dict[str, Any]:
        slot = self._slot(query)
        for attempt in range(MAX_RESENDS + 1):
            actor = self.slots[slot]
            try:
                record = await actor.run_query.remote(query, which, self.run_id, self.keep_text)
            except self.ray.exceptions.RayActorError as exc:
                if self.slots[slot] is actor:  # the first query to see the death replaces the worker
                    dead = self.owners[slot]
                    self.slots[slot] = self._spawn(slot)
                    self.restarts += 1
                    if self.cache_server is not None:  # the dead worker's claims go with it (others poll till then)
                        await self.cache_server.forget.remote(dead)
                if attempt == MAX_RESENDS:
                    return _failed(query, f"WorkerDied: Ray worker died {MAX_RESENDS + 1} times running this "
                                          f"query ({type(exc).__name__})")
                continue
            if "__budget__" in record:
                raise BudgetExceeded(record["__budget__"])
            return record
        raise AssertionError("unreachable")

    @property
    def summary_extra(self) -> dict[str, Any]:
        shares = {}
        for m in self.models:
            spec = next(net.spec.models[m] for net in self.networks if m in net.spec.models)
            limits = [split_limits(spec, self.workers, i).limits for i in range(self.workers)]
            shares[m] = {"concurrency": [x.concurrency for x in limits], "rpm": limits[0].rpm, "tpm": limits[0].tpm}
        return {"ray": {"address": self.address, "workers": self.workers, "worker_restarts": self.restarts,
                        "nodes": len(self.nodes),
                        "per_worker_limits": shares,
                        "per_worker_max_cost": None if self.max_cost is None else self.max_cost / self.workers}}

    def view(self, which: int) -> "_View":
        """An engine-like handle whose ``run_query(q)`` runs network ``which``."""
        return _View(self, which)

    async def aclose(self) -> None:
        ray = self.ray
        peaks = await asyncio.gather(*(w.close.remote() for w in self.slots), return_exceptions=True)
        for got in peaks:
            if isinstance(got, tuple):
                for model, peak in got[0].items():
                    self.models.setdefault(model, _Peak()).max_in_flight += peak
                self.nodes.add(got[1])
        for w in self.slots:
            ray.kill(w)
        if self.cache_server is not None:
            await self.cache_server.close.remote()
            ray.kill(self.cache_server)
        if self.started:
            ray.shutdown()


@dataclass(frozen=True)
class _View:
    engine: RayEngine
    which: int

    async def run_query(self, query: Query) -> dict[str, Any]:
        return await self.engine.run_query(query, self.which)


def _failed(query: Query, error: str) -> dict[str, Any]:
    """The record of a query that could not run at all (its worker kept dying)."""
    from llmnet.execute.engine import query_fingerprint

    usage = Usage()
    return {"id": query.id, "qhash": query_fingerprint(query), "answer": None,
            "correct": False if query.answer is not None else None, "error": error, "truth": query.answer,
            **{k: v for k, v in usage.to_dict().items() if k in ("calls", "attempts", "samples", "cache_hits",
                                                                   "prompt_tokens", "completion_tokens",
                                                                   "cost_usd", "cached_tokens",
                                                                   "cached_cost_usd")},
            "latency_s": 0.0, "trace": {}}
