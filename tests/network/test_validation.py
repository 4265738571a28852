"""Every validation rule, with its exact message."""

import textwrap

import pytest

from llmnet import SpecError, load_network, loads_network

HEAD = """
models:
  m: {backend: simulated, model: sim}
"""


def problems(text: str, **params) -> list[str]:
    with pytest.raises(SpecError) as info:
        loads_network(textwrap.dedent(HEAD + text), params=params, file="net.yaml")
    return [f"{p.file}:{p.line}: {p.path}: {p.message}" if p.line else p.format() for p in info.value.problems]


def test_unknown_input_names_known_nodes():
    assert problems("""
nodes:
  gen: {kind: generator, model: m}
  judge: {kind: judge, model: m, inputs: [gen]}
  vote: {kind: vote, inputs: [gen2]}
output: vote
""") == ["net.yaml:8: nodes.vote.inputs[0]: unknown node 'gen2' (known: gen, judge, vote); did you mean 'gen'?"]


def test_unknown_model():
    assert problems("""
nodes:
  gen: {kind: generator, model: big}
""") == ["net.yaml:6: nodes.gen.model: unknown model 'big' (known: m)"]


def test_cycle_is_named():
    out = problems("""
nodes:
  a: {kind: judge, model: m, inputs: [b]}
  b: {kind: judge, model: m, inputs: [a]}
output: a
""")
    assert len(out) == 1 and "cycle: a -> b -> a" in out[0] and out[0].startswith("net.yaml:6:")


def test_unreachable_node():
    assert problems("""
nodes:
  gen: {kind: generator, model: m}
  other: {kind: generator, model: m}
  vote: {kind: vote, inputs: [gen]}
output: vote
""") == ["net.yaml:7: nodes.other: node 'other' is unreachable: the output 'vote' does not depend on it; "
         "use it as an input or delete it"]


def test_missing_and_ambiguous_output():
    assert problems("""
nodes:
  a: {kind: generator, model: m}
  b: {kind: generator, model: m}
""") == ["net.yaml:2: output: missing 'output': several nodes could be the result (a, b); "
         "name one with 'output: NODE'"]
    assert problems("""
nodes:
  a: {kind: generator, model: m}
output: z
""") == ["net.yaml:7: output: output 'z' is not a node (known: a)"]


def test_single_sink_needs_no_output():
    net = loads_network(HEAD + "nodes:\n  a: {kind: generator, model: m}\n")
    assert net.output == "a"


def test_vote_without_generator_upstream():
    assert problems("""
nodes:
  gen: {kind: generator, model: m}
  v1: {kind: vote, inputs: [gen]}
  v2: {kind: vote, inputs: [v1]}
output: v2
""") == ["net.yaml:8: nodes.v2.inputs[0]: a vote node needs candidates from a generator, judge or filter "
         "upstream, but 'v1' is a vote node, which produces a single answer; feed it a generator instead"]


def test_gate_missing_and_overlapping_branches():
    out = problems("""
subgraphs:
  s1: {nodes: {g: {kind: generator, model: m}}}
nodes:
  route:
    kind: gate
    router: {kind: rule, default: a, rules: [{field: difficulty, op: gt, value: 1, branch: zz}]}
    branches: {a: s1, b: s1, c: nope}
""")
    assert out == [
        "net.yaml:11: nodes.route.branches.b: branches 'a' and 'b' overlap: both run subgraph 's1'; "
        "give each branch its own subgraph",
        "net.yaml:11: nodes.route.branches.c: branch 'c' points at unknown subgraph 'nope' (known: s1); "
        "declare it under 'subgraphs:'",
        "net.yaml:10: nodes.route.router.rules[0].branch: router sends queries to branch 'zz', which gate "
        "'route' does not have (known: a, b, c)",
    ]


def test_gate_needs_two_branches():
    assert problems("""
subgraphs:
  s1: {nodes: {g: {kind: generator, model: m}}}
nodes:
  route: {kind: gate, router: {kind: rule, default: a}, branches: {a: s1}}
""") == ["net.yaml:8: nodes.route.branches: gate 'route' needs at least two branches (has 1)"]


def test_gates_cannot_recurse_through_subgraphs():
    out = problems("""
subgraphs:
  s1: {nodes: {r: {kind: gate, router: {kind: rule, default: a}, branches: {a: s1, b: s2}}}}
  s2: {nodes: {g: {kind: generator, model: m}}}
nodes:
  route: {kind: gate, router: {kind: rule, default: a}, branches: {a: s1, b: s2}}
""")
    assert out == ["net.yaml:6: subgraphs.s1: subgraphs include each other through gates: s1 -> s1; break the loop"]


def test_errors_inside_subgraphs_name_the_subgraph():
    out = problems("""
subgraphs:
  s1: {nodes: {g: {kind: generator, model: nope}}}
  s2: {nodes: {g: {kind: generator, model: m}}}
nodes:
  route: {kind: gate, router: {kind: rule, default: a}, branches: {a: s1, b: s2}}
""")
    assert out == ["net.yaml:6: subgraphs.s1.nodes.g.model: unknown model 'nope' (known: m)"]


def test_unset_parameter_and_unknown_override():
    assert problems("""
nodes:
  gen: {kind: generator, model: m, samples: "${K}"}
""") == ["net.yaml:6: nodes.gen.samples: parameter ${K} is not set; add 'params: {K: ...}' or pass --set K=VALUE"]
    assert problems("""
params: {K: 3}
nodes:
  gen: {kind: generator, model: m, samples: "${K}"}
""", Q=1) == ["--set: Q: no parameter 'Q' in this network (known: K)"]


def test_parameters_keep_their_type_and_override():
    text = HEAD + "params: {K: 3}\nname: vote-${K}\nnodes:\n  gen: {kind: generator, model: m, samples: '${K}'}\n"
    net = loads_network(text)
    assert net.spec.nodes["gen"].samples == 3 and net.name == "vote-3"
    assert loads_network(text, params={"K": 15}).spec.nodes["gen"].samples == 15


def test_unknown_key_suggests_the_right_one():
    assert problems("""
nodes:
  gen: {kind: generator, model: m, sample: 3}
""") == ["net.yaml:6: nodes.gen.sample: unknown key 'sample' (known: api, description, inputs, kind, max_tokens, model, "
         "prompt, samples, seed, stop, temperature, top_p); did you mean 'samples'?"]


def test_unknown_kind_and_backend():
    first = problems("nodes:\n  gen: {kind: generatr}\n")[0]
    assert first.startswith("net.yaml:5: nodes.gen.kind: unknown kind 'generatr' (known: ")
    assert first.endswith("); did you mean 'generator'?")
    known = first[first.index("(known: ") + 8:first.index(")")].split(", ")
    # the built-in kinds, plus any a test registered from Python in this process
    assert {"filter", "filter_vote", "gate", "generator", "judge", "rank", "refine", "select", "tournament",
            "vote"} <= set(known) and known == sorted(known)
    with pytest.raises(SpecError) as info:
        loads_network("models:\n  m: {backend: bedrock, model: x}\nnodes:\n  g: {kind: generator, model: m}\n")
    out = [p.format() for p in info.value.problems]
    assert out[0].startswith("network:2:7: models.m.backend: unknown backend 'bedrock' (known: local, openai")


def test_template_must_use_plain_names():
    out = problems("task: {prompt: '{question.__class__}'}\nnodes:\n  g: {kind: generator, model: m}\n")
    assert out == ["net.yaml:4: task.prompt: template field '{question.__class__}' must be a plain name "
                   "like {question}"]


def test_bad_regex_and_missing_pattern():
    out = problems("task: {answer: {kind: regex}}\nnodes:\n  g: {kind: generator, model: m}\n")
    assert out == ["net.yaml:4: task.answer: answer kind 'regex' needs 'pattern'"]


def test_yaml_syntax_error_has_line_and_column(write):
    path = write("nodes:\n  a: {kind: generator, model: m\n  b: [\n")
    with pytest.raises(SpecError) as info:
        load_network(path)
    (p,) = info.value.problems
    assert (p.line, p.column) == (3, 4) and "YAML syntax error" in p.message


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system",
                                 "!custom {a: 1}"])
def test_unsafe_tags_refused(write, tag):
    path = write(f"nodes:\n  a: {tag}\n")
    with pytest.raises(SpecError) as info:
        load_network(path)
    assert "only plain YAML" in info.value.problems[0].message


def test_duplicate_key(write):
    with pytest.raises(SpecError) as info:
        load_network(write("nodes: {}\nnodes: {}\n"))
    assert info.value.problems[0].message == "duplicate key 'nodes': each key may appear once"


def test_include_and_include_cycle(write, tmp_path):
    write(HEAD + "nodes:\n  g: {kind: generator, model: m, samples: 5}\n  v: {kind: vote, inputs: [g]}\n"
                 "output: v\n", "voted.yaml")
    main = write(HEAD + "subgraphs:\n  s: {include: voted.yaml}\n  c: {nodes: {one: {kind: generator, model: m}}}\n"
                        "nodes:\n  r: {kind: gate, router: {kind: rule, default: a}, branches: {a: c, b: s}}\n")
    net = load_network(main)
    assert set(net.branches["r"]["b"].spec.nodes) == {"g", "v"}
    write("subgraphs:\n  s: {include: loop.yaml}\nnodes:\n  g: {kind: generator, model: m}\n", "loop.yaml")
    with pytest.raises(SpecError) as info:
        load_network(tmp_path / "loop.yaml")
    assert "include cycle: loop.yaml -> loop.yaml" in info.value.problems[0].message


def test_error_in_included_file_names_that_file(write):
    write(HEAD + "nodes:\n  g: {kind: generator, model: nope}\n", "part.yaml")
    main = write(HEAD + "subgraphs:\n  s: {include: part.yaml}\n  c: {nodes: {one: {kind: generator, model: m}}}\n"
                        "nodes:\n  r: {kind: gate, router: {kind: rule, default: a}, branches: {a: c, b: s}}\n")
    with pytest.raises(SpecError) as info:
        load_network(main)
    line = info.value.problems[0].format()
    assert "part.yaml:5:" in line and "nodes.g.model: unknown model 'nope'" in line


def test_every_problem_reported_at_once():
    out = problems("""
nodes:
  gen: {kind: generator, model: x}
  vote: {kind: vote, inputs: [nope]}
output: vote
""")
    assert len(out) == 2  # unknown model and unknown input (unreachable is implied, not repeated)


def test_include_path_with_a_nul_byte_is_a_spec_error():
    """Found by the fuzzer: a NUL in an include path crashed path resolution with ValueError."""
    with pytest.raises(SpecError, match="include needs a file path"):
        loads_network("name: x\nsubgraphs: {a: {include: \"a\\0b.yaml\"}}\nnodes: {}\n", file="n.yaml")
