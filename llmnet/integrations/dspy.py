"""llmnet in DSPy programs (extra ``dspy``).

* ``NetworkModule``: a ``dspy.Module`` whose ``forward(question, **fields)`` runs a whole
  llmnet network (in process, one shared engine) and returns a ``dspy.Prediction`` with
  ``answer``, ``branch``, ``usage`` and ``correct``.
* ``served_lm(base_url, network_name)``: a ``dspy.LM`` pointing at ``llmnet serve``, so any
  DSPy program can use a whole network where it would use one model; query fields
  (``id``, ``answer``, anything a template or router reads) go in a call's
  ``extra_body={...}``.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price list at import

import dspy  # noqa: E402

from llmnet.execute.session import Invocation, Session, BackgroundLoop  # noqa: E402
from llmnet.network.graph import Network  # noqa: E402


def _prediction(result: Invocation) -> dspy.Prediction:
    return dspy.Prediction(answer=result.answer, branch=result.branch, correct=result.correct,
                           usage=result.usage.to_dict(), trace=result.trace)


class NetworkModule(dspy.Module):
    """Runs ``network`` on one question per call; ``session_options`` go to ``Session`` (cache, ...)."""

    def __init__(self, network: Network, **session_options: Any):
        super().__init__()
        self.network = network
        self._options = session_options
        self._session: Session | None = None
        self._blocking: tuple[BackgroundLoop, Session] | None = None

    def forward(self, question: str, **fields: Any) -> dspy.Prediction:
        query = {"question": question, **fields}
        if not self._options:
            return _prediction(self.network.invoke(query))
        if self._blocking is None:  # its own session (cache, budget, ...) on a background loop
            runner = BackgroundLoop()
            self._blocking = (runner, runner.run(self._open()))
        runner, session = self._blocking
        return _prediction(runner.run(session.ainvoke(query)))

    async def _open(self) -> Session:
        return Session(self.network, **self._options)

    async def aforward(self, question: str, **fields: Any) -> dspy.Prediction:
        if self._session is None or self._session.closed:
            self._session = Session(self.network, **self._options)
        return _prediction(await self._session.ainvoke({"question": question, **fields}))


def served_lm(base_url: str, network_name: str, api_key: str | None = None, **lm_options: Any) -> dspy.LM:
    """A ``dspy.LM`` for a network served by ``llmnet serve`` at ``base_url`` (``http://HOST:PORT/v1``).

    DSPy's own cache is off by default: llmnet caches per sample itself.
    """
    options = {"cache": False, "num_retries": 0, **lm_options}
    return dspy.LM(f"openai/{network_name}", api_base=base_url, api_key=api_key or "unused",
                     model_type="chat", **options)
