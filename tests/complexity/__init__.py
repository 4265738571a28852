"""ComplexityNet tests: labelling, classifier artefacts, the gate router and the CLI.

SIM_TIERS is a tiers file over simulated models (never a result about a real model): a
weak model answers a task of difficulty d with probability logistic(logit(0.9) - d), the
strong one with logistic(logit(0.995) - d), so easy sums are solved cheaply and hard
ones need the top tier.
"""

from pathlib import Path

SIM_TIERS = """\
name: sim-tiers
params: {cost_unit: weak-calls, cost_one: 1, cost_vote5: 5, cost_top: 20}
models:
  weak: {backend: simulated, model: weak, skill: 0.9}
  strong: {backend: simulated, model: strong, skill: 0.995}
task: {prompt: "Q: {question}\\nA:", answer: {kind: number}}
subgraphs:
  one: {nodes: {g: {kind: generator, model: weak, temperature: 0.7}}}
  vote5:
    nodes:
      g: {kind: generator, model: weak, samples: 5, temperature: 0.7}
      v: {kind: vote, inputs: [g]}
    output: v
  strong: {nodes: {g: {kind: generator, model: strong, temperature: 0.7}}}
nodes:
  tiers:
    kind: gate
    router: {kind: rule, default: top}
    branches: {one: one, vote5: vote5, top: strong}
output: tiers
"""


def write_tiers(directory: Path, text: str = SIM_TIERS, name: str = "tiers.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
