"""Random YAML and random mutations of the examples never crash the loader."""

import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmnet import SpecError, loads_network
from tests.conftest import GRAPHS, mutate

EXAMPLES = [p.read_text() for p in sorted(GRAPHS.glob("*.yaml"))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["generator", "vote", "gate", "smol", "${K}", "gen"]))
documents = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(st.text(max_size=8) | st.sampled_from(
                                                             ["nodes", "models", "kind", "inputs", "output",
                                                              "model", "subgraphs", "params"]), kids, max_size=4)),
                         max_leaves=25)


def load_or_spec_error(text: str) -> None:
    try:
        loads_network(text, file="fuzz.yaml")
    except SpecError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        assert all(p.format() for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents(doc):
    load_or_spec_error(yaml.safe_dump(doc))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text):
    load_or_spec_error(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(EXAMPLES) - 1), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_mutated_examples(which, seed, n):
    rng = random.Random(seed)
    data = yaml.safe_load(EXAMPLES[which])
    for _ in range(n):
        data = mutate(data, rng)
    load_or_spec_error(yaml.safe_dump(data))
