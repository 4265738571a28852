"""The network file as pydantic models: ``models``, ``task``, ``nodes``, ``subgraphs``, ``output``.

Every model forbids unknown keys and node kinds are a tagged union on ``kind``, so a
typo is reported at its YAML path instead of being ignored. ``NetworkSpec.model_json_schema()``
is what ``llmnet schema`` prints for editors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmnet.network.templates import template_fields
from llmnet.routing.specs import RouterSpec

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- models


class Price(Strict):
    """Dollars per one million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class Limits(Strict):
    """Per-model request limits, enforced by the executor on every attempt."""

    concurrency: int = Field(8, ge=1, le=10_000, description="requests in flight at once")
    rpm: float | None = Field(None, gt=0, description="requests per minute")
    tpm: float | None = Field(None, gt=0, description="tokens (prompt + completion) per minute")
    timeout: float = Field(60.0, gt=0, description="seconds per call attempt")
    retries: int = Field(4, ge=0, le=50, description="extra attempts after a retryable failure")
    backoff: float = Field(0.5, ge=0, description="first backoff in seconds; doubles each retry, with jitter")
    max_backoff: float = Field(30.0, ge=0)


class _ModelBase(Strict):
    model: str = Field(min_length=1, description="model name at the backend, or a .gguf path for local")
    price: Price = Price()
    limits: Limits = Limits()


class LocalModel(_ModelBase):
    """llama.cpp in process: ``smollm2-135m``, ``gemma3-270m`` or a path to a .gguf file."""

    backend: Literal["local"]
    n_ctx: int = Field(1024, ge=64)
    n_threads: int | None = Field(None, ge=1)


class SimulatedModel(_ModelBase):
    """A synthetic model for theory checks, tests and benchmarks (never a real result).

    A query is answered correctly with probability ``p_correct`` from the item when it has
    one, else from ``skill`` and the item's ``difficulty`` (see backends.simulated).
    """

    backend: Literal["simulated"]
    skill: float = Field(0.7, ge=0, le=1)
    distractors: int = Field(3, ge=1, description="how many distinct wrong answers it spreads over")
    judge_accuracy: float = Field(0.8, ge=0, le=1, description="chance a judge call labels a candidate rightly")
    latency_s: float = Field(0.0, ge=0)
    prompt_tokens: int | None = Field(None, ge=0, description="default: len(prompt) // 4")
    completion_tokens: int = Field(4, ge=0)
    seed: int = 0


class OpenAIModel(_ModelBase):
    """Any OpenAI-compatible endpoint through ``openai.AsyncOpenAI``."""

    backend: Literal["openai"]
    base_url: str | None = None
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    supports_n: bool = Field(False, description="request n samples in one call (choices are always counted)")
    structured_choices: bool = Field(False, description="constrain choice answers with a JSON-schema enum")


VLLM_OWN_FIELDS = frozenset({"model", "prompt", "messages", "n", "seed", "temperature", "top_p", "max_tokens",
                             "max_completion_tokens", "stop", "structured_outputs", "stream"})
"""Request fields llmnet sets itself: ``extra_body`` may not override them (they are in the cache key already)."""


class VllmModel(_ModelBase):
    """``vllm serve`` replicas: one request with n=K, prefix-affine replica choice.

    Sampling fields left unset fall back to the model's ``generation_config.json`` on the
    server, so the ones that matter are set here, sent on every request and part of the
    cache key (the backend's identity).
    """

    backend: Literal["vllm"]
    base_url: str | list[str] = Field(description="one URL or several replica URLs")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    health_interval_s: float = Field(10.0, gt=0)
    replica_concurrency: int | None = Field(None, ge=1, le=10_000,
                                            description="requests in flight per replica (limits.concurrency: per model)")
    top_k: int | None = Field(None, ge=-1, description="vLLM top_k (-1: off)")
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    chat_template_kwargs: dict[str, Any] | None = Field(None, description="chat API only, e.g. {enable_thinking: false}")
    extra_body: dict[str, Any] | None = Field(None, description="any other request fields vLLM takes")

    @field_validator("extra_body")
    @classmethod
    def _not_ours(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        clash = sorted(set(v or ()) & VLLM_OWN_FIELDS)
        if clash:
            raise ValueError(f"extra_body may not set {', '.join(clash)}: llmnet sets it (use the node's fields)")
        return v


class ReplayModel(_ModelBase):
    """Recorded completions replayed at no cost (see backends.replay): a JSONL of
    ``{"prompt", "completions"}`` or an llmnet cache file plus the recorded model's identity."""

    backend: Literal["replay"]
    source: str = Field(min_length=1, description="a .jsonl of prompt -> completions, or an llmnet cache (.sqlite)")
    identity: str | None = Field(None, description="cache files: the recorded model's identity, e.g. local:smollm2-135m")


ModelSpec = Annotated[Union[LocalModel, SimulatedModel, OpenAIModel, VllmModel, ReplayModel],
                      Field(discriminator="backend")]


# ----------------------------------------------------------------------------- task


class AnswerSpec(Strict):
    """How an answer is pulled out of a completion and compared with the truth."""

    kind: Literal["number", "choice", "regex", "text", "code"] = "number"
    pattern: str | None = Field(None, description="regex kind: group 1 (or the whole match) is the answer")
    choices: list[str] | None = Field(None, description="choice kind: allowed labels (default: A, B, C, ...)")
    position: Literal["first", "last"] = Field("first", description="which match to take when several occur")

    @model_validator(mode="after")
    def _check(self) -> "AnswerSpec":
        if self.kind == "regex" and not self.pattern:
            raise ValueError("answer kind 'regex' needs 'pattern'")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from None
        return self


class TaskSpec(Strict):
    prompt: str = Field("{question}", description="template; fields are the query's fields, e.g. {question}")
    system: str | None = None
    answer: AnswerSpec = AnswerSpec()

    @field_validator("prompt", "system")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            template_fields(v)
        return v


# ----------------------------------------------------------------------------- nodes


class _NodeBase(Strict):
    description: str | None = None


class _CallNode(_NodeBase):
    """A node that calls a model; sampling parameters are part of the cache key."""

    model: Name
    temperature: float = Field(0.7, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(64, ge=1, le=1_000_000)
    stop: list[str] = Field(default_factory=list)
    api: Literal["completion", "chat"] = "completion"
    seed: int = Field(0, description="sample i of this node is drawn with seed + i")
    prompt: str | None = Field(None, description="template overriding the default for this node")

    @field_validator("prompt")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            template_fields(v)
        return v


INPUT_FIELDS = ("candidates", "previous")
"""Prompt fields through which a node that takes ``inputs`` sees them: ``{candidates}`` (the
inputs' candidates, numbered ``1. ...``) and ``{previous}`` (the input's answer)."""


class GeneratorNode(_CallNode):
    """K samples from one model for the task prompt. Produces candidates.

    With ``inputs`` (earlier nodes, any kind) its ``prompt`` sees them as ``{candidates}``
    and ``{previous}``: a generator fed by a generator refines its answer, one fed by K
    candidates fuses them into a new one (Chen et al.'s generator layers; Archon's fuser).
    """

    kind: Literal["generator"]
    samples: int = Field(1, ge=1, le=100_000)
    inputs: list[Name] = Field(default_factory=list, description="earlier nodes the prompt reads as "
                                                                  "{candidates} / {previous}")


class RefineNode(_CallNode):
    """``rounds`` generators in a chain: round r's prompt sees round r-1's candidates.

    Round 1 reads the ``inputs``; each round draws ``samples`` candidates, and ``{previous}``
    is the plurality answer of the round before (Chen et al.'s generator-scaling network, with
    the chain length as one parameter so ``llmnet sweep --grid L=1,2,4`` can vary it).
    ``rounds: 0`` passes the inputs' candidates through unchanged.
    """

    kind: Literal["refine"]
    inputs: list[Name] = Field(min_length=1)
    rounds: int = Field(1, ge=0, le=1000)
    samples: int = Field(1, ge=1, le=100_000)


class _CandidateConsumer(BaseModel):
    inputs: list[Name] = Field(min_length=1)


class VoteNode(_NodeBase, _CandidateConsumer):
    """Plurality over the extracted answers (weighted by judge verdicts when present)."""

    kind: Literal["vote"]
    seed: int = Field(0, description="seeds the coin that breaks ties")


class _JudgeCall(_CallNode, _CandidateConsumer):
    temperature: float = Field(0.0, ge=0, le=5)
    max_tokens: int = Field(16, ge=1, le=1_000_000)


class JudgeNode(_JudgeCall):
    """An LLM marks each candidate [[correct]] or [[wrong]]; all are kept, with weights."""

    kind: Literal["judge"]


class FilterNode(_JudgeCall):
    """Like judge, but drops the candidates judged wrong (all kept if none survives)."""

    kind: Literal["filter"]


class FilterVoteNode(_JudgeCall):
    """Chen et al.'s Filter-Vote: judge every candidate, plurality over the kept ones."""

    kind: Literal["filter_vote"]
    vote_seed: int = 0


class SelectNode(_JudgeCall):
    """An LLM reads the numbered candidates and picks one."""

    kind: Literal["select"]


class RankNode(_JudgeCall):
    """An LLM orders the numbered candidates best first; the top ``keep`` go on (Archon's ranker).

    The first mention of each valid number in the reply sets the order; candidates it never
    names follow in their original order. Produces candidates.
    """

    kind: Literal["rank"]
    keep: int = Field(1, ge=1, le=100_000)
    max_tokens: int = Field(32, ge=1, le=1_000_000)


class TournamentNode(_JudgeCall):
    """A knockout over the candidates: pairwise selector calls, ceil(log2 K) rounds.

    Chen et al.'s selector-scaling network: each match shows two candidates as ``{candidates}``
    (``1.`` and ``2.``) and the reply's first number picks the winner (an unusable reply keeps
    the first); an odd candidate out gets a bye. The last one standing answers.
    """

    kind: Literal["tournament"]
    max_tokens: int = Field(4, ge=1, le=1_000_000)


class GateNode(_NodeBase):
    """A router picks ONE branch per query; only that branch's nodes run and cost."""

    kind: Literal["gate"]
    router: RouterSpec
    branches: dict[Name, Name] = Field(description="branch name -> subgraph name")


BUILTIN_NODES: dict[str, type[BaseModel]] = {
    "generator": GeneratorNode, "vote": VoteNode, "judge": JudgeNode, "filter": FilterNode,
    "filter_vote": FilterVoteNode, "select": SelectNode, "gate": GateNode, "refine": RefineNode, "rank": RankNode,
    "tournament": TournamentNode}
_CUSTOM_NODES: dict[str, type[BaseModel]] = {}

NodeSpec = Annotated[Union[tuple(BUILTIN_NODES.values())], Field(discriminator="kind")]  # type: ignore[valid-type]

CANDIDATE_PRODUCERS = {"generator", "refine", "judge", "filter", "rank"}
"""Kinds whose output is a list of candidates; every other kind produces one answer
(``register_node_spec`` adds custom kinds that produce candidates)."""


def node_kinds() -> dict[str, type[BaseModel]]:
    """Every node kind a network file may use (built-in and registered), kind -> spec model."""
    return {**BUILTIN_NODES, **_CUSTOM_NODES}


class SubgraphSpec(Strict):
    """A named, reusable piece of network; a gate branch points at one.

    ``include: other.yaml`` takes the nodes, output, models and subgraphs of another
    network file (path relative to the including file); the including file's task applies.
    Includes are resolved when a file is loaded, so a compiled spec never holds one.
    """

    include: str | None = None
    nodes: dict[Name, NodeSpec] = Field(default_factory=dict)
    output: Name | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _nodes_or_include(self) -> "SubgraphSpec":
        if self.include is None and not self.nodes:
            raise ValueError("a subgraph needs 'nodes' (or 'include: FILE')")
        if self.include is not None and self.nodes:
            raise ValueError("give either 'include' or 'nodes', not both")
        return self


class NetworkSpec(Strict):
    """A compound-inference network (the whole YAML file)."""

    name: str = Field("network", min_length=1)
    description: str | None = None
    params: dict[Name, str | int | float | bool] = Field(
        default_factory=dict, description="defaults for ${NAME} placeholders; override with --set NAME=VALUE"
    )
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    task: TaskSpec = TaskSpec()
    subgraphs: dict[Name, SubgraphSpec] = Field(default_factory=dict)
    nodes: dict[Name, NodeSpec] = Field(min_length=1)
    output: Name | None = None

    def to_data(self) -> dict[str, Any]:
        """Plain data (defaults left out) that loads back into an equal spec."""
        return self.model_dump(mode="json", exclude_defaults=True)


class CustomNode(_NodeBase):
    """Base for node kinds registered from Python (``llmnet.register_node``) that call no model."""


class CustomCallNode(_CallNode):
    """Base for registered node kinds that call a model (``ctx.sample`` reads these fields)."""


def register_node_spec(kind: str, spec_model: type[BaseModel], produces: str = "answer") -> type[BaseModel]:
    """Make ``kind: KIND`` valid in network files, validated by ``spec_model`` like a built-in kind.

    ``spec_model`` is a pydantic model (subclass ``CustomNode`` or ``CustomCallNode`` for
    unknown-key errors and the call fields); its ``kind`` field is set to ``Literal[kind]``.
    ``produces`` is ``"answer"`` or ``"candidates"``. Returns the model actually used.
    """
    from pydantic import create_model

    if not re.fullmatch(NAME_PATTERN, kind):
        raise ValueError(f"node kind '{kind}' must be a plain name")
    if kind in BUILTIN_NODES:
        raise ValueError(f"node kind '{kind}' is built in; pick another name")
    if not (isinstance(spec_model, type) and issubclass(spec_model, BaseModel)):
        raise TypeError("spec_model must be a pydantic model class")
    if produces not in ("answer", "candidates"):
        raise ValueError("produces must be 'answer' or 'candidates'")
    model = create_model(spec_model.__name__, __base__=spec_model, __module__=spec_model.__module__,
                         kind=(Literal[kind], ...))  # type: ignore[call-overload]
    _CUSTOM_NODES[kind] = model
    CANDIDATE_PRODUCERS.discard(kind)
    if produces == "candidates":
        CANDIDATE_PRODUCERS.add(kind)
    _rebuild()
    return model


def _rebuild() -> None:
    """Rebuild the models that hold nodes so the tagged union includes the registered kinds."""
    global NodeSpec
    NodeSpec = Annotated[Union[tuple(node_kinds().values())], Field(discriminator="kind")]  # type: ignore
    for holder in (SubgraphSpec, NetworkSpec):
        holder.model_fields["nodes"].annotation = dict[Name, NodeSpec]  # type: ignore[valid-type]
        holder.model_rebuild(force=True)


def node_adapter():
    """A TypeAdapter for one node of any kind known now."""
    from pydantic import TypeAdapter

    return TypeAdapter(NodeSpec)


def json_schema() -> dict[str, Any]:
    """JSON schema of a network file, for editors (``llmnet schema``)."""
    schema = NetworkSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmnet network"
    return schema
