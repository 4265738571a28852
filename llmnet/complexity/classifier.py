"""The ComplexityNet classifier: task text -> complexity class -> tier, stored as data.

Bae et al. (arXiv 2312.11511) fine-tune davinci-002 to predict a task's complexity label
from its text. llmnet's default is fast and strong on a CPU: TF-IDF features (word
1-2-grams, character 2-4-grams inside words, and the same character n-grams over the
text with every digit written 0, so "417 + 38" and "902 + 15" share their *shape*),
then multinomial logistic regression whose probabilities are calibrated by Platt's
sigmoids fitted on cross-validated decision values (scikit-learn's
``CalibratedClassifierCV(method="sigmoid", ensemble=False)``). With a class too rare to
cross-validate the plain regression probabilities are kept, and the artefact says so.

Artefacts are JSON, never pickles: vocabularies, idf weights, coefficients, intercepts,
calibration parameters, the tiers and their costs and a format version. ``RouterModel``
predicts from that data with numpy alone, reproducing the in-memory scikit-learn model's
probabilities (tested), so serving needs no scikit-learn.

Per-tier success models (beyond the paper): for each tier t, a logistic regression on the
same features predicts P(tier t solves the task) from its pass counts (c successes out of
T trials enter as a positive row of weight c/T and a negative one of weight 1 - c/T: the
binomial likelihood). They do not assume that a stronger tier solves what a cheaper one
does, so routing to the cheapest tier whose predicted success clears a target makes the
target an expected success rate (``rule: success``).

The paper's untuned baseline is here too: a local LLM asked the paper's 1-5 complexity
question, five samples averaged and rounded, collapsed onto tiers (``llm_scores``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from llmnet.errors import ArtefactError

FORMAT = "llmnet.complexitynet"
FORMAT_VERSION = 1

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
_SPACES = re.compile(r"\s\s+")
_DIGIT = re.compile(r"\d")


def digit_shape(text: str) -> str:
    """Lower-cased text with every digit written 0 (a number's shape: its length and position)."""
    return _DIGIT.sub("0", text.lower())


def word_ngrams(text: str, low: int, high: int) -> list[str]:
    """Word n-grams exactly as scikit-learn's ``analyzer="word"`` makes them."""
    tokens = _TOKEN.findall(text.lower())
    out = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        out.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return out


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside space-padded words, as scikit-learn's ``analyzer="char_wb"``."""
    out = []
    for word in _SPACES.sub(" ", text).split():
        w = f" {word} "
        for n in range(low, high + 1):
            offset = 0
            out.append(w[:n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset:offset + n])
            if offset == 0:  # a word shorter than n is counted once
                break
    return out


BLOCKS = {
    "word": lambda text, lo, hi: word_ngrams(text, lo, hi),
    "char": lambda text, lo, hi: char_wb_ngrams(text.lower(), lo, hi),
    "shape": lambda text, lo, hi: char_wb_ngrams(digit_shape(text), lo, hi),
}


@dataclass(frozen=True, eq=False)
class FeatureBlock:
    """One TF-IDF block (sublinear tf, smooth idf, l2-normalised rows) as plain data."""

    kind: str
    ngrams: tuple[int, int]
    terms: tuple[str, ...]
    idf: np.ndarray
    index: dict[str, int] = field(compare=False, repr=False)

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "FeatureBlock":
        terms = tuple(d["terms"])
        return cls(d["kind"], tuple(d["ngrams"]), terms, np.asarray(d["idf"], dtype=float),
                   {t: i for i, t in enumerate(terms)})

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "ngrams": list(self.ngrams), "terms": list(self.terms), "idf": self.idf.tolist()}

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            counts: dict[int, int] = {}
            for gram in BLOCKS[self.kind](text, *self.ngrams):
                j = self.index.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            js = np.fromiter(counts, dtype=np.int64)
            w = (1.0 + np.log(np.fromiter(counts.values(), dtype=float))) * self.idf[js]
            w /= np.sqrt(np.dot(w, w))
            rows.extend([r] * len(js))
            cols.extend(js.tolist())
            vals.extend(w.tolist())
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(self.terms)))


FEATURES = ("tfidf", "embedding", "both")
"""Text features: TF-IDF n-grams, a local LM's embeddings (``llmnet.complexity.embed``), or both."""


def _block_from_data(d: Mapping[str, Any]):
    if d.get("kind") == "embedding":
        from llmnet.complexity.embed import EmbeddingBlock

        return EmbeddingBlock.from_data(d)
    return FeatureBlock.from_data(d)


def _sklearn_vectorizer(kind: str, ngrams: tuple[int, int]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if kind == "word":
        return TfidfVectorizer(analyzer="word", ngram_range=ngrams, sublinear_tf=True)
    if kind == "char":
        return TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True)
    return TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, preprocessor=digit_shape)


class ComplexityClassifier:
    """TF-IDF + calibrated logistic regression (scikit-learn's estimator contract).

    Hyper-parameters only here; ``fit`` returns self; learned attributes end in ``_``.
    """

    def __init__(self, C: float = 1.0, word_ngrams: tuple[int, int] = (1, 2), char_ngrams: tuple[int, int] = (2, 4),
                 shape: bool = True, folds: int = 5, max_iter: int = 5000, features: str = "tfidf",
                 embedding_model: str = "smollm2-135m"):
        if features not in FEATURES:
            raise ArtefactError(f"unknown features '{features}' (known: {', '.join(FEATURES)})")
        self.C = C
        self.features = features
        self.embedding_model = embedding_model
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.shape = shape
        self.folds = folds
        self.max_iter = max_iter

    def _blocks(self) -> list[tuple[str, tuple[int, int]]]:
        blocks = [("word", self.word_ngrams), ("char", self.char_ngrams)]
        return blocks + ([("shape", self.char_ngrams)] if self.shape else [])

    def _features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return sparse.hstack([v.transform(texts) for _, v in self.vectorizers_]).tocsr()

    def fit(self, texts: Sequence[str], classes: Sequence[int]) -> "ComplexityClassifier":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(classes)
        labels, counts = np.unique(y, return_counts=True)
        if len(labels) < 2:
            raise ArtefactError(f"training needs at least two classes; all {len(y)} tasks have class "
                                f"{labels[0] if len(labels) else 'none'}")
        self.vectorizers_ = []
        if self.features != "tfidf":
            from llmnet.complexity.embed import EmbeddingBlock

            self.vectorizers_.append(("embedding", EmbeddingBlock.fit(texts, self.embedding_model)))
        for kind, ngrams in (self._blocks() if self.features != "embedding" else []):
            vec = _sklearn_vectorizer(kind, ngrams)
            try:
                vec.fit(texts)
            except ValueError:  # empty vocabulary (e.g. no word of two characters): skip the block
                continue
            self.vectorizers_.append((kind, vec))
        X = self._features(texts)
        base = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="newton-cg")
        folds = min(self.folds, int(counts.min()))
        if folds >= 2:
            self.model_ = CalibratedClassifierCV(base, method="sigmoid", ensemble=False,
                                                 cv=StratifiedKFold(folds, shuffle=True, random_state=0)).fit(X, y)
            self.calibration_ = "sigmoid"
        else:
            self.model_ = base.fit(X, y)
            self.calibration_ = "none"
        self.classes_ = [int(c) for c in labels]
        return self

    def fit_success(self, texts: Sequence[str], counts: Sequence[Sequence[int]], trials: int
                    ) -> "ComplexityClassifier":
        """Per-tier success models on the fitted features (module docstring); sets ``success_``."""
        from sklearn.linear_model import LogisticRegression

        X = self._features(texts)
        rate = np.asarray(counts, dtype=float) / float(trials)
        stacked = sparse.vstack([X, X]).tocsr()
        y = np.r_[np.ones(len(texts)), np.zeros(len(texts))]
        coef, intercept = [], []
        for t in range(rate.shape[1]):
            w = np.r_[rate[:, t], 1.0 - rate[:, t]]
            if w[:len(texts)].sum() == 0 or w[len(texts):].sum() == 0:  # always or never solves: a constant
                p = float(np.clip(rate[:, t].mean(), 1e-4, 1 - 1e-4))
                coef.append(np.zeros(X.shape[1]))
                intercept.append(float(np.log(p / (1 - p))))
                continue
            lr = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="lbfgs").fit(stacked, y, sample_weight=w)
            coef.append(lr.coef_[0])
            intercept.append(float(lr.intercept_[0]))
        self.success_ = {"coef": np.asarray(coef), "intercept": np.asarray(intercept)}
        return self

    def success_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(tier t solves) per text and tier, from the in-memory success models."""
        z = np.asarray(self._features(texts) @ self.success_["coef"].T) + self.success_["intercept"]
        return _expit(z)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities (columns in ``classes_`` order), from scikit-learn."""
        return self.model_.predict_proba(self._features(texts))

    def to_data(self) -> dict[str, Any]:
        """The fitted model as plain data (the ``model`` part of a router artefact)."""
        if self.calibration_ == "sigmoid":
            calibrated = self.model_.calibrated_classifiers_[0]
            lr = calibrated.estimator
            calibration = {"method": "sigmoid", "a": [float(c.a_) for c in calibrated.calibrators],
                           "b": [float(c.b_) for c in calibrated.calibrators]}
        else:
            lr, calibration = self.model_, {"method": "none"}
        blocks = []
        for kind, vec in self.vectorizers_:
            if kind == "embedding":
                blocks.append(vec.to_data())
                continue
            terms = [t for t, _ in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])]
            blocks.append({"kind": kind, "ngrams": list(vec.ngram_range), "terms": terms, "idf": vec.idf_.tolist()})
        out = {"features": blocks, "coef": lr.coef_.tolist(), "intercept": lr.intercept_.tolist(),
               "calibration": calibration, "classes": self.classes_, "C": self.C}
        if hasattr(self, "success_"):
            out["success"] = {"coef": self.success_["coef"].tolist(), "intercept": self.success_["intercept"].tolist()}
        return out


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True, eq=False)
class RouterModel:
    """A trained router artefact: predicts class and tier probabilities from task text, with numpy only."""

    tiers: tuple[str, ...]
    costs: tuple[float, ...]
    cost_unit: str
    classes: tuple[int, ...]
    class_tier: tuple[int, ...]  # tier index of each class
    blocks: tuple[FeatureBlock, ...]
    coef: np.ndarray
    intercept: np.ndarray
    calibration: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)
    success: Mapping[str, np.ndarray] | None = None  # per-tier success models (coef, intercept), if trained

    @classmethod
    def from_classifier(cls, clf: ComplexityClassifier, tiers: Sequence[str], costs: Sequence[float],
                        cost_unit: str, class_tier: Mapping[int, int], meta: Mapping[str, Any] | None = None
                        ) -> "RouterModel":
        data = clf.to_data()
        return cls.from_data(_artefact(data, tiers, costs, cost_unit, [class_tier[c] for c in data["classes"]],
                                       meta or {}))

    @classmethod
    def from_data(cls, d: Mapping[str, Any], where: str = "router") -> "RouterModel":
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ArtefactError(f"{where}: not a ComplexityNet router (expected \"format\": \"{FORMAT}\"); "
                                f"train one with 'llmnet complexity train'")
        if d.get("version") != FORMAT_VERSION:
            raise ArtefactError(f"{where}: router format version {d.get('version')!r}, but this llmnet reads "
                                f"version {FORMAT_VERSION}; retrain it with 'llmnet complexity train'")
        try:
            m = d["model"]
            model = cls(tuple(t["name"] for t in d["tiers"]), tuple(float(t["cost"]) for t in d["tiers"]),
                        str(d["cost_unit"]), tuple(int(c) for c in m["classes"]), tuple(int(t) for t in m["class_tier"]),
                        tuple(_block_from_data(b) for b in m["features"]),
                        np.asarray(m["coef"], dtype=float), np.asarray(m["intercept"], dtype=float),
                        dict(m["calibration"]), dict(d.get("meta", {})),
                        {k: np.asarray(v, dtype=float) for k, v in m["success"].items()} if "success" in m else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtefactError(f"{where}: malformed router artefact ({type(exc).__name__}: {exc})") from None
        n_features = sum(len(b.terms) for b in model.blocks)
        k = len(model.classes)
        rows = 1 if k == 2 else k
        if model.coef.shape != (rows, n_features) or model.intercept.shape != (rows,) or \
                not all(0 <= t < len(model.tiers) for t in model.class_tier) or len(model.class_tier) != k:
            raise ArtefactError(f"{where}: inconsistent router artefact (coefficients, classes and tiers disagree)")
        if model.success is not None and (model.success["coef"].shape != (len(model.tiers), n_features)
                                          or model.success["intercept"].shape != (len(model.tiers),)):
            raise ArtefactError(f"{where}: inconsistent router artefact (success models and tiers disagree)")
        return model

    def to_data(self) -> dict[str, Any]:
        model = {"features": [b.to_data() for b in self.blocks], "coef": self.coef.tolist(),
                 "intercept": self.intercept.tolist(), "calibration": dict(self.calibration),
                 "classes": list(self.classes)}
        if self.success is not None:
            model["success"] = {k: v.tolist() for k, v in self.success.items()}
        return _artefact(model, self.tiers, self.costs, self.cost_unit, list(self.class_tier), dict(self.meta))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_data(), ensure_ascii=False) + "\n", encoding="utf-8")

    def _features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return sparse.hstack([b.transform(texts) for b in self.blocks]).tocsr()

    def success_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(tier t solves the task) per text and tier (the per-tier success models)."""
        if self.success is None:
            raise ArtefactError("this router has no per-tier success models; retrain it with 'llmnet complexity train'")
        return _expit(np.asarray(self._features(texts) @ self.success["coef"].T) + self.success["intercept"])

    def class_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, columns in ``classes`` order."""
        z = np.asarray(self._features(texts) @ self.coef.T) + self.intercept
        k = len(self.classes)
        method = self.calibration.get("method")
        if method == "sigmoid":
            a, b = np.asarray(self.calibration["a"]), np.asarray(self.calibration["b"])
            p = _expit(-(a * z + b))
            if k == 2:
                proba = np.hstack([1.0 - p, p])
            else:
                total = p.sum(axis=1, keepdims=True)
                proba = np.divide(p, total, out=np.full_like(p, 1.0 / k), where=total != 0)
        elif k == 2:
            p = _expit(z)
            proba = np.hstack([1.0 - p, p])
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            proba = e / e.sum(axis=1, keepdims=True)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba

    def tier_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(label = tier j) for each tier (classes summed onto their tier)."""
        proba = self.class_proba(texts)
        out = np.zeros((len(texts), len(self.tiers)))
        for col, tier in enumerate(self.class_tier):
            out[:, tier] += proba[:, col]
        return out


def _artefact(model: Mapping[str, Any], tiers: Sequence[str], costs: Sequence[float], cost_unit: str,
              class_tier: Sequence[int], meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION,
            "tiers": [{"name": t, "cost": float(c)} for t, c in zip(tiers, costs)], "cost_unit": cost_unit,
            "model": {**model, "class_tier": list(class_tier)}, "meta": dict(meta)}


def load_router_model(path: str | Path) -> RouterModel:
    """Read a router artefact, checking its format and version (``ArtefactError`` otherwise)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtefactError(f"{path}: cannot read router: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{path}: not a JSON router artefact ({exc})") from None
    return RouterModel.from_data(data, str(path))


def select_c(train: tuple[Sequence[str], Sequence[int]], val: tuple[Sequence[str], Sequence[int]],
             grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), features: str = "tfidf"
             ) -> tuple[float, dict[float, float]]:
    """The regularisation C with the lowest validation log loss, and every C's loss.

    Without validation tasks C = 1 (and no losses).
    """
    if not len(val[0]):
        return 1.0, {}
    losses: dict[float, float] = {}
    for C in grid:
        clf = ComplexityClassifier(C=C, features=features).fit(list(train[0]), list(train[1]))
        proba = clf.predict_proba(list(val[0]))
        col = {c: i for i, c in enumerate(clf.classes_)}
        p = [proba[i, col[c]] if c in col else 0.0 for i, c in enumerate(val[1])]
        losses[C] = float(-np.mean(np.log(np.clip(p, 1e-6, 1.0))))
    return min(losses, key=lambda C: (losses[C], C)), losses


# ----------------------------------------------------------------------------- the untuned LLM baseline

PAPER_WORK = "creating the correct code for the task"
PAPER_PROMPT = ("On a scale of 1 to 5 based solely on the complexity of {work}, where 1 represents a very easy task, "
                "2 represents a fairly straightforward task, and 3 represents a medium difficulty task, 4 represents "
                "a challenging task, and 5 represents a highly complex problem, the complexity of the task "
                "\"{question}\" is: ")
"""Bae et al.'s prompt in the authors' wording (ComplexityNet's released code)."""


def score_to_tier(score: float | None, n_tiers: int) -> int:
    """A 1-5 score, rounded half up, onto tiers: {1,2}, {3,4}, {5} for three tiers, proportionally otherwise.

    No score (nothing parseable in any sample) counts as 3, the middle of the scale.
    """
    rounded = 3 if score is None else min(5, max(1, math.floor(score + 0.5)))
    return min(n_tiers - 1, (rounded - 1) * n_tiers // 5)


def llm_scores(questions: Sequence[tuple[str, str]], model: Mapping[str, Any], samples: int = 5,
               work: str = PAPER_WORK, temperature: float = 0.7, cache_path: str | Path | None = None,
               backends: Mapping[str, Any] | None = None) -> list[float | None]:
    """The untuned baseline: the mean 1-5 score of ``samples`` answers per (id, question), or None.

    ``model`` is a model spec (``{"backend": "local", "model": "smollm2-135m"}``); the calls
    go through the executor and its cache like any other.
    """
    from llmnet.execute import RunConfig, run_network
    from llmnet.network.builder import NetworkBuilder
    from llmnet.tasks.query import Query

    prompt = PAPER_PROMPT.replace("{work}", work.replace("{", "{{").replace("}", "}}"))
    b = NetworkBuilder("complexity-score", task={"prompt": prompt, "answer": {"kind": "regex", "pattern": "[1-5]"}})
    b.model("scorer", **dict(model))
    b.generator("score", model="scorer", samples=samples, temperature=temperature, max_tokens=4, stop=["\n"])
    queries = [Query(qid, question) for qid, question in questions]
    report = run_network(b.build(), queries, RunConfig(cache_path=Path(cache_path) if cache_path else None,
                                                       progress=False, backends=dict(backends or {}) or None))
    out: list[float | None] = []
    for rec in report.results:
        values = [int(a) for a in rec.get("trace", {}).get("score", {}).get("answers", []) if a]
        out.append(sum(values) / len(values) if values else None)
    return out
