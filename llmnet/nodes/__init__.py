"""Node kinds: one module each, one ``run`` each."""

from llmnet.nodes import gate, generator, judge, select, vote

RUNNERS = {
    "generator": generator.run,
    "vote": vote.run,
    "judge": judge.judge,
    "filter": judge.filter_,
    "filter_vote": judge.filter_vote,
    "select": select.run,
}

__all__ = ["RUNNERS", "gate"]
