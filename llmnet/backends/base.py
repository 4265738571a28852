"""The backend contract: one abstract method, ``complete(request) -> Completion``.

Everything else — rate limits, retries, timeouts, the per-sample cache, usage metering,
re-asking for samples a server silently dropped — wraps a backend in ``llmnet.execute``,
so a new backend is only the translation of one request into one call.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from llmnet.tasks.query import Query


@dataclass(slots=True)
class Request:
    """One call for ``n`` samples; sample j is drawn with seed ``seed + j``.

    ``query``/``role``/``candidate`` are context for the simulated backend only; real
    backends never send them anywhere.
    """

    prompt: str
    n: int = 1
    seed: int = 0
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    api: Literal["completion", "chat"] = "completion"
    system: str | None = None
    choices: tuple[str, ...] | None = None
    role: Literal["generate", "judge", "select"] = "generate"
    query: Query | None = field(default=None, compare=False)
    candidate: str | None = field(default=None, compare=False)
    n_candidates: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled completion. The fields after the token counts are what a server said about it,
    when it said anything: ``reasoning`` (a reasoning model's thinking, kept beside the answer
    ``text``), ``cached_tokens`` (prompt tokens its prefix cache served, from
    ``usage.prompt_tokens_details.cached_tokens``), ``fingerprint`` (``system_fingerprint``) and
    ``served_model`` (the model name the server answered as)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    reasoning: str | None = None
    cached_tokens: int = 0
    fingerprint: str | None = None
    served_model: str | None = None

    def meta(self) -> dict[str, object]:
        """The server's remarks that are set (empty for most backends)."""
        if not (self.reasoning or self.cached_tokens or self.fingerprint or self.served_model):
            return {}  # the common case, on the cache's write path
        return {k: v for k, v in (("reasoning", self.reasoning), ("cached_tokens", self.cached_tokens),
                                  ("fingerprint", self.fingerprint), ("served_model", self.served_model)) if v}


@dataclass(frozen=True)
class Completion:
    """What came back. A server may return fewer samples than asked; the executor re-asks."""

    samples: tuple[Sample, ...]


class Backend(ABC):
    """A model endpoint. ``supports_n``: one call may return several samples."""

    supports_n: bool = False

    def __init__(self, name: str, spec):
        self.name = name
        self.spec = spec

    @property
    def identity(self) -> str:
        """What makes two samples interchangeable in the cache (never holds secrets)."""
        return f"{self.spec.backend}:{self.spec.model}"

    def cache_identity(self, request: Request) -> str:
        """The identity the sample cache keys ``request`` by: ``identity``, plus anything
        else the backend reads that the request's prompt does not show (the simulated
        backend reads the item's fields)."""
        return self.identity

    @abstractmethod
    async def complete(self, request: Request) -> Completion:
        """Run one call; raise ``llmnet.errors.BackendError`` subclasses on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, threads or model memory."""


def estimate_tokens(text: str) -> int:
    """A cheap prompt-token estimate (about 4 characters a token) for budgets before a call."""
    return max(1, len(text) // 4)


_KEY_JSON = json.JSONEncoder(ensure_ascii=False)  # the same text as json.dumps(..., ensure_ascii=False), one encoder
_KEY_STR = json.encoder.encode_basestring  # how that encoder writes a string (ensure_ascii=False)
_KEY_TAILS: dict[tuple, str] = {}  # a node's sampling parameters -> their part of the key's JSON text
_MAX_TAILS = 4096


def request_key(identity: str, request: Request) -> str:
    """Everything that changes a sample's distribution, but not n or the seed: the SHA-256 of the
    JSON array [identity, prompt, system, api, temperature, top_p, max_tokens, stop, choices, role,
    candidate, n_candidates]. The part after the prompt is the same for every query of a node, so
    its text is made once (``_key_tail``); the key is byte for byte ``_KEY_JSON.encode`` of the whole
    array (``tests/backends/test_conformance.py`` checks this)."""
    text = "[" + _KEY_STR(identity) + ", " + _KEY_STR(request.prompt) + _key_tail(request)
    return hashlib.sha256(text.encode()).hexdigest()


def _key_tail(request: Request) -> str:
    t, p, m, c = request.temperature, request.top_p, request.max_tokens, request.n_candidates
    # what compares equal but prints differently: types tell apart 1, 1.0 and True, and a zero's repr 0.0 and
    # -0.0 (a repr of every number would cost a third of the key)
    params = (request.system, request.api, t, type(t), not t and repr(t), p, type(p), not p and repr(p), m, type(m),
              not m and repr(m), request.stop, request.choices, request.role, request.candidate, c, type(c))
    tail = _KEY_TAILS.get(params)
    if tail is None:
        tail = ", " + _KEY_JSON.encode([request.system, request.api, t, p, m, list(request.stop),
                                        list(request.choices or ()), request.role, request.candidate,
                                        request.n_candidates])[1:]
        if len(_KEY_TAILS) < _MAX_TAILS:
            _KEY_TAILS[params] = tail
    return tail
