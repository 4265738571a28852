"""llmnet's exception tree: one root, mapped at the boundary.

    LlmnetError
    ├── SpecError            a network file or spec is wrong (carries Problems)
    ├── GraphError           the compiled graph is inconsistent (a SpecError)
    ├── DatasetError         a dataset is malformed or unknown
    ├── CacheError           the sample cache cannot be opened or used
    ├── BudgetExceeded       --max-cost would be exceeded by the next call
    ├── ArtefactError        a saved router / plan file is unreadable or of the wrong version
    └── BackendError         a model call failed
        ├── RateLimited      429; carries retry_after seconds when the server said so
        ├── BackendTimeout   the call took longer than the model's timeout
        ├── BackendUnavailable  5xx, dropped connection, malformed body (retryable)
        └── BackendRejected  4xx other than 429 (not retryable: the request is wrong)

Backends translate their library's errors into this tree in one place each, and
re-raise ``from exc`` so the cause is kept for ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass


class LlmnetError(Exception):
    """Root of every error llmnet raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One user mistake: where it is and what would fix it."""

    file: str | None
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self) -> str:
        where = self.file or "network"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(LlmnetError):
    """A network description is wrong; ``problems`` lists every mistake found."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(None, "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))


class GraphError(SpecError):
    """The network's graph is inconsistent (cycle, dangling input, bad gate...)."""


class DatasetError(LlmnetError):
    """A dataset is unknown or a line of it is malformed."""


class ArtefactError(LlmnetError):
    """A saved artefact (router, plan) cannot be read or has the wrong format version."""


class CacheError(LlmnetError):
    """The sample cache cannot be opened or written (not a database, unwritable path...)."""


class BudgetExceeded(LlmnetError):
    """The next call would take the run past its --max-cost budget."""


class BackendError(LlmnetError):
    """A model call failed. ``retryable`` says whether trying again may help."""

    retryable = False


class RateLimited(BackendError):
    retryable = True

    def __init__(self, message: str = "rate limited", retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BackendTimeout(BackendError):
    retryable = True


class BackendUnavailable(BackendError):
    retryable = True

    def __init__(self, message: str = "backend unavailable", retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BackendRejected(BackendError):
    retryable = False
