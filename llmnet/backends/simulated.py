"""A synthetic model for theory checks, tests and benchmarks — never a result about a real model.

Per query it answers correctly with probability p: the item's explicit ``p_correct`` when
it has one, else ``skill`` adjusted by the item's ``difficulty`` (a logistic in
``logit(skill) - difficulty``). Otherwise it gives one of ``distractors`` wrong answers,
the first distractor twice as likely as the others (so plurality votes can go wrong, as
on real hard items); for a choice question the wrong answers are the other options. Its
cache identity holds every item field it reads (``cache_identity``). Every draw is a pure function of (seed, query id, role, sample seed),
so any sample can be reproduced alone and results never depend on scheduling.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct

from llmnet.backends.base import Backend, Completion, Request, Sample, estimate_tokens


def _uniform(*parts: object) -> float:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2**64


def p_correct(skill: float, query) -> float:
    if query is None:
        return skill
    if query.p_correct is not None:
        return float(query.p_correct)
    if query.difficulty is None:
        return skill
    s = min(max(skill, 1e-6), 1 - 1e-6)
    return 1 / (1 + math.exp(-(math.log(s / (1 - s)) - float(query.difficulty))))


def distractor(truth: str | None, k: int) -> str:
    """The k-th wrong answer for a true answer (numbers shift, anything else gets a suffix)."""
    try:
        return str(int(float(truth)) + k + 1) if truth is not None else f"wrong{k}"
    except ValueError:
        return f"{truth}~{k + 1}"


class SimulatedBackend(Backend):
    supports_n = True

    @property
    def identity(self) -> str:
        s = self.spec
        return f"simulated:{s.model}:{s.skill}:{s.distractors}:{s.judge_accuracy}:{s.seed}"

    def cache_identity(self, request: Request) -> str:
        """Every item field the simulated model reads is part of its samples' identity, so two
        datasets with the same question texts and different ``p_correct`` never share samples."""
        q = request.query
        if q is None:
            return self.identity
        return f"{self.identity}:" + json.dumps([q.id, q.answer, q.p_correct, q.difficulty, list(q.choices or ())])

    def _wrong(self, request: Request, k: int) -> str:
        """The k-th wrong answer: another option of a choice question, else a distractor."""
        q = request.query
        truth = q.answer if q is not None else None
        if request.choices:
            labels = [chr(ord("A") + i) for i in range(len(request.choices))]
            pool = labels if truth is not None and str(truth).strip().upper() in labels else list(request.choices)
            others = [c for c in pool if truth is None or str(c).strip().upper() != str(truth).strip().upper()]
            if others:
                return others[k % len(others)]
        return distractor(truth, k)

    def _answer(self, request: Request, seed: int) -> str:
        q = request.query
        qid = q.id if q is not None else request.prompt
        truth = q.answer if q is not None else None
        if request.role == "judge":
            right = request.candidate is not None and truth is not None and _norm(request.candidate) == _norm(truth)
            honest = _uniform(self.spec.seed, qid, "judge", request.candidate, seed) < self.spec.judge_accuracy
            return "correct]]" if right == honest else "wrong]]"
        if request.role == "select":
            return str(1 + int(_uniform(self.spec.seed, qid, "select", seed) * max(1, request.n_candidates)))
        p = p_correct(self.spec.skill, q)
        if _uniform(self.spec.seed, qid, "gen", seed) < p:
            return f" {truth}" if truth is not None else " 0"
        n_wrong = self.spec.distractors
        if request.choices:
            n_wrong = min(n_wrong, max(len(request.choices) - 1, 1))
        weights = [2.0] + [1.0] * (n_wrong - 1)
        u = _uniform(self.spec.seed, qid, "wrong", seed) * sum(weights)
        k = 0
        while u > weights[k]:
            u -= weights[k]
            k += 1
        return f" {self._wrong(request, k)}"

    async def complete(self, request: Request) -> Completion:
        if self.spec.latency_s:
            await asyncio.sleep(self.spec.latency_s)
        prompt_tokens = self.spec.prompt_tokens if self.spec.prompt_tokens is not None else estimate_tokens(
            request.prompt)
        samples = tuple(
            Sample(self._answer(request, request.seed + j), prompt_tokens if j == 0 else 0,
                   self.spec.completion_tokens)
            for j in range(request.n)
        )
        return Completion(samples)


def _norm(text: str) -> str:
    return text.strip().rstrip(".").lower()
