"""llmnet in DSPy programs (extra ``dspy``).

* ``NetworkModule(network, cache=None)``: a ``dspy.Module`` whose ``forward(question, **fields)``
  runs a whole llmnet network (in process, one shared engine) and returns a ``dspy.Prediction``
  with ``answer``, ``branch``, ``usage`` and ``correct``. ``cache`` means what it means for
  ``network.ainvoke`` / ``invoke``: off by default (every call pays for its samples and no file is
  written); a SQLite path or a ``SampleCache`` reads and writes that per-sample cache.
* ``served_lm(base_url, network_name)``: a ``dspy.LM`` pointing at ``llmnet serve``, so any
  DSPy program can use a whole network where it would use one model; query fields
  (``id``, ``answer``, anything a template or router reads) go in a call's
  ``extra_body={...}``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price list at import

import dspy  # noqa: E402

from llmnet.execute.cache import SampleCache  # noqa: E402
from llmnet.execute.session import Invocation, Session, BackgroundLoop  # noqa: E402
from llmnet.network.graph import Network  # noqa: E402


_OPENING = threading.Lock()  # a module's first blocking call opens its session once, whatever the threads


def _prediction(result: Invocation) -> dspy.Prediction:
    return dspy.Prediction(answer=result.answer, branch=result.branch, correct=result.correct,
                           usage=result.usage.to_dict(), trace=result.trace)


class NetworkModule(dspy.Module):
    """Runs ``network`` on one question per call (``forward`` blocking, ``aforward`` async).

    ``cache``: as for ``network.ainvoke(q, cache=...)``: None (the default) uses no cache, so every
    call pays for its samples and writes no file; a SQLite path or a ``SampleCache`` reads and writes
    that per-sample cache, so a question asked again is answered from it (``usage["cache_hits"]``, no
    calls). Without other options calls go through ``network.invoke`` / ``ainvoke`` with that cache
    (one engine per network, cache and event loop); ``session_options`` (``max_cost``,
    ``concurrency``, ``seed``, ``backends``) give the module its own ``Session`` per event loop
    instead (blocking calls: one on a background loop).
    """

    def __init__(self, network: Network, *, cache: str | Path | SampleCache | None = None, **session_options: Any):
        super().__init__()
        self.network = network
        self.cache = cache
        self._options = session_options
        self._sessions: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()  # per event loop
        self._blocking: tuple[BackgroundLoop, Session] | None = None

    def forward(self, question: str, **fields: Any) -> dspy.Prediction:
        query = {"question": question, **fields}
        if not self._options:
            return _prediction(self.network.invoke(query, cache=self.cache))
        with _OPENING:
            if self._blocking is None:  # its own session (budget, ...) on a background loop
                runner = BackgroundLoop()
                self._blocking = (runner, runner.run(self._open()))
        runner, session = self._blocking
        return _prediction(runner.run(session.ainvoke(query)))

    async def _open(self) -> Session:
        return Session(self.network, cache=self.cache, **self._options)

    async def aforward(self, question: str, **fields: Any) -> dspy.Prediction:
        query = {"question": question, **fields}
        if not self._options:
            return _prediction(await self.network.ainvoke(query, cache=self.cache))
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._sessions[loop] = await self._open()
        return _prediction(await session.ainvoke(query))


def served_lm(base_url: str, network_name: str, api_key: str | None = None, **lm_options: Any) -> dspy.LM:
    """A ``dspy.LM`` for a network served by ``llmnet serve`` at ``base_url`` (``http://HOST:PORT/v1``).

    DSPy's own cache is off by default: llmnet caches per sample itself.
    """
    options = {"cache": False, "num_retries": 0, **lm_options}
    return dspy.LM(f"openai/{network_name}", api_base=base_url, api_key=api_key or "unused",
                     model_type="chat", **options)
