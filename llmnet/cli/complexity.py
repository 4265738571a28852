"""``llmnet complexity``: label tasks by running tiers, train the router, evaluate it.

    llmnet complexity label graphs/tiers_local.yaml --data arithmetic:n=100 --out runs/cx/labels.jsonl
    llmnet complexity train runs/cx/labels.jsonl --out runs/cx/router.json
    llmnet complexity eval runs/cx/labels.jsonl runs/cx/router.json --out runs/cx/eval
    llmnet complexity eval runs/cx/labels.jsonl --folds 5 --out runs/cx/cv

Each command parses its options and calls one library function; mistakes print one line
and exit 2, as everywhere in llmnet.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, LiveProgress, RayOption, check_ray, err, out, parse_sets, user_errors

complexity_app = typer.Typer(no_args_is_help=True, help="ComplexityNet: label tasks by running tiers, train a "
                                                        "router on the labels, evaluate it on held-out tasks.")

def _floats(text: str, option: str) -> list[float]:
    from llmnet.errors import Problem, SpecError

    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise SpecError(Problem(option, "", f"'{text}' is not a comma-separated list of numbers")) from None


@complexity_app.command()
@user_errors
def label(tiers_file: Path = typer.Argument(..., metavar="TIERS", help="tiers file: a network whose output gate's "
                                                                       "branches are the tiers, cheapest first"),
          data: str = typer.Option(..., "--data", help="arithmetic[:opts], bilevel[:opts] or a JSONL path"),
          out_path: Path = typer.Option(..., "--out", help="labels JSONL to write"),
          trials: int = typer.Option(5, "--trials", help="runs of every tier per task"),
          threshold: int = typer.Option(4, "--threshold", help="successes a tier needs to be the label"),
          rule: str = typer.Option("threshold", "--rule", help="threshold, or paper (Bae et al.'s rule, 3 tiers)"),
          unsolved: str = typer.Option("drop", "--unsolved", help="tasks no tier solves: drop, top or best"),
          limit: Optional[int] = typer.Option(None, "--limit", help="first N tasks only"),
          gate: Optional[str] = typer.Option(None, "--gate", help="the gate whose branches are the tiers "
                                                                  "(default: the output node)"),
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite)"),
          no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the cache"),
          concurrency: int = typer.Option(8, "--concurrency", min=1, help="tasks in flight at once"),
          seed: int = typer.Option(0, "--seed", help="seed of generated datasets"),
          set_: Optional[list[str]] = typer.Option(None, "--set", help="override a parameter of the tiers file"),
          no_progress: bool = typer.Option(False, "--no-progress", help="no progress display"),
          ray: Optional[str] = RayOption) -> None:
    """Run every tier --trials times per task and label each task with the cheapest tier that suffices.

    Example: llmnet complexity label graphs/tiers_local.yaml --data arithmetic:n=100 --out labels.jsonl
    """
    from llmnet.complexity.label import label_tasks
    from llmnet.complexity.tiers import load_tiers
    from llmnet.tasks.datasets import load_dataset

    ray = check_ray(ray)
    tiers = load_tiers(tiers_file, gate, parse_sets(set_))
    queries = load_dataset(data, limit, seed)

    with LiveProgress("labelling tasks", not no_progress) as bar:
        labels = label_tasks(tiers, queries, trials, rule, threshold, unsolved, None if no_cache else cache,
                             concurrency, progress=bar.update, ray=ray)
    labels.write_jsonl(out_path)
    for line in labels.summary_lines():
        out.print(line)
    out.print(f"wrote {out_path}")


def _is_split_file(text: str) -> bool:
    """``--split`` names a JSON split file (train / validation / test ids) rather than three fractions."""
    return Path(text).suffix == ".json" or Path(text).is_file()


def _progress(what: str):
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            err.print(f"\r{what} {done}/{total}", end="" if done < total else "\n")
    return show


@complexity_app.command()
@user_errors
def train(labels_path: Path = typer.Argument(..., metavar="LABELS", help="labels JSONL from 'complexity label'"),
          out_path: Path = typer.Option(Path("router.json"), "--out", help="router artefact (JSON) to write"),
          split: str = typer.Option("0.6,0.2,0.2", "--split", help="train,validation,test fractions, or a JSON "
                                                                  "file {train: [ids], validation: [ids], "
                                                                  "test: [ids]}"),
          seed: int = typer.Option(0, "--seed", help="seeds the split"),
          tolerance: float = typer.Option(0.01, "--tolerance", help="accuracy the chosen cost-aware target may "
                                                                    "lose to always-top on validation"),
          features: str = typer.Option("tfidf", "--features", help="tfidf, embedding (SmolLM2 embeddings via "
                                                                   "llama.cpp) or both")) -> None:
    """Train the router (TF-IDF + calibrated logistic regression, per-tier success models), save it as JSON,
    and report it on its held-out test tasks against the majority baseline, random at equal cost and the oracle.

    Example: llmnet complexity train labels.jsonl --out router.json
    """
    from llmnet.complexity.evaluate import evaluate_router, held_out, train_router
    from llmnet.complexity.label import read_labels

    from llmnet.complexity.evaluate import read_split

    fractions = None if _is_split_file(split) else _floats(split, "--split")
    records = read_labels(labels_path)
    fixed = read_split(Path(split), records) if fractions is None else None
    model = train_router(records, fractions or (0.6, 0.2, 0.2), seed, tolerance, split=fixed, features=features)
    model.save(out_path)
    m = model.meta
    out.print(f"trained on {m['trained_on']} labelled tasks (C={m['C']:g}, calibration {m['calibration']}); "
              f"{len(m['split']['test_ids'])} tasks held out for testing")
    if "target" in m:
        out.print(f"cost-aware target chosen on validation: {m['target']:g}")
    out.print(f"wrote {out_path}")
    if m["split"]["test_ids"]:
        for line in evaluate_router(held_out(records, model), model).summary_lines():
            out.print(line)


@complexity_app.command("eval")
@user_errors
def evaluate_command(
        labels_path: Path = typer.Argument(..., metavar="LABELS", help="labels JSONL from 'complexity label'"),
        router_path: Optional[Path] = typer.Argument(None, metavar="[ROUTER]", help="router JSON from 'complexity "
                                                                                   "train' (not with --folds)"),
        out_dir: Path = typer.Option(Path("complexity_eval"), "--out", help="directory for report.json and "
                                                                            "curve.png"),
        folds: Optional[int] = typer.Option(None, "--folds", help="K-fold cross-validation: train a router per fold "
                                                                 "and score every task out of fold"),
        repeats: int = typer.Option(1, "--repeats", help="repeats of the K-fold cross-validation (new folds each)"),
        split: Optional[Path] = typer.Option(None, "--split", help="evaluate on the test ids of this JSON split file"),
        seed: int = typer.Option(0, "--seed", help="seeds the folds"),
        features: str = typer.Option("tfidf", "--features", help="with --folds: tfidf, embedding or both"),
        target: Optional[float] = typer.Option(None, "--target", help="cost-aware target (default: the one "
                                                                      "chosen on validation)"),
        success_targets: Optional[str] = typer.Option(None, "--success-targets", help="targets of the success "
                                                                                      "rule, comma-separated "
                                                                                      "(default 0.5,...,0.9); "
                                                                                      "the budget rule is also "
                                                                                      "scored at their costs"),
        budgets: Optional[str] = typer.Option(None, "--budgets", help="also the budget rule at these mean costs "
                                                                      "per task (comma-separated, in the tiers' "
                                                                      "cost unit), e.g. 2,3"),
        llm_baseline: Optional[str] = typer.Option(None, "--llm-baseline", help="also score the untuned baseline "
                                                                                "with this local model, e.g. "
                                                                                "smollm2-135m"),
        llm_work: str = typer.Option("solving the task", "--llm-work", help="what the baseline prompt calls the "
                                                                           "work (the paper: creating the correct "
                                                                           "code for the task)"),
        cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache for the baseline's calls")
) -> None:
    """Evaluate a router on held-out tasks (or by --folds K cross-validation): label accuracy, accuracy and cost
    with 95% intervals beside the majority baseline, random at equal cost and the oracle, one verdict per policy.

    End-to-end numbers come from the labelling runs (no new model calls). Examples:
    llmnet complexity eval labels.jsonl router.json --out eval/;
    llmnet complexity eval labels.jsonl --folds 5 --out cv/
    """
    from llmnet.complexity.classifier import llm_scores, load_router_model
    from llmnet.complexity.evaluate import SUCCESS_TARGETS, cross_validate, evaluate_router, held_out, read_split
    from llmnet.complexity.label import read_labels
    from llmnet.errors import Problem, SpecError

    targets = _floats(success_targets, "--success-targets") if success_targets else list(SUCCESS_TARGETS)
    if any(not 0 < t <= 1 for t in targets):
        raise SpecError(Problem("--success-targets", success_targets or "", "targets are probabilities in (0, 1]"))
    budget_list = _floats(budgets, "--budgets") if budgets else []
    if any(not b > 0 for b in budget_list):
        raise SpecError(Problem("--budgets", budgets or "", "budgets are mean costs per task, each above 0"))
    if folds is not None:
        if router_path is not None or split is not None or llm_baseline:
            raise SpecError(Problem("--folds", "", "cross-validation trains its own routers: give no ROUTER, "
                                                   "--split or --llm-baseline with it"))
        report = cross_validate(read_labels(labels_path), folds, repeats, seed, progress=_progress("fold"),
                                features=features, success_targets=targets, budgets=budget_list)
    else:
        if router_path is None:
            raise SpecError(Problem("ROUTER", "", "give a router JSON from 'llmnet complexity train', or --folds K"))
        model = load_router_model(router_path)
        records = read_labels(labels_path)
        if split is not None:
            records = read_split(split, records)[2]
            if not records:
                raise SpecError(Problem("--split", str(split), "the split file has no test ids"))
        else:
            records = held_out(records, model)
        scores = None
        if llm_baseline:
            scores = llm_scores([(str(r["id"]), r["question"]) for r in records],
                                {"backend": "local", "model": llm_baseline}, work=llm_work, cache_path=cache)
        report = evaluate_router(records, model, target, scores, success_targets=targets, budgets=budget_list)
    for line in report.summary_lines():
        out.print(line)
    json_path, png_path = report.write(out_dir)
    out.print(f"wrote {json_path} and {png_path}")
