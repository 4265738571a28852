"""``llmnet complexity label | train | eval`` end to end on simulated tiers, and their errors."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from llmnet.cli.main import app
from tests.complexity import write_tiers
from tests.conftest import ROOT


def llmnet(*args, cwd):
    return subprocess.run([sys.executable, "-m", "llmnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_label_train_eval_end_to_end(tmp_path):
    write_tiers(tmp_path)
    res = llmnet("complexity", "label", "tiers.yaml", "--data", "arithmetic:n=60,digits=1-4", "--unsolved", "top",
                 "--cache", "cache.sqlite", "--out", "labels.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "labels: one:" in res.stdout and "unsolved:" in res.stdout
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 60
    res = llmnet("complexity", "train", "labels.jsonl", "--out", "router.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    artefact = json.loads((tmp_path / "router.json").read_text())
    assert artefact["format"] == "llmnet.complexitynet" and artefact["version"] == 1
    assert [t["name"] for t in artefact["tiers"]] == ["one", "vote5", "top"]
    res = llmnet("complexity", "eval", "labels.jsonl", "router.json", "--out", "eval", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert {"always one", "always top", "oracle", "router predicted"} <= set(report["policies"])
    assert report["n_test"] == len(artefact["meta"]["split"]["test_ids"])
    assert (tmp_path / "eval" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def labelled(tmp_path):
    write_tiers(tmp_path)
    (tmp_path / "not_labels.jsonl").write_text('{"id": "a", "question": "1 + 1", "answer": "2"}\n')
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["label", "{d}/tiers.yaml", "--data", "arithmetic:n=3", "--rule", "median", "--out", "{d}/l.jsonl"],
     "unknown rule 'median'"),
    (["label", "{d}/tiers.yaml", "--data", "nosuchset", "--out", "{d}/l.jsonl"], "unknown dataset"),
    (["label", "{d}/missing.yaml", "--data", "arithmetic:n=3", "--out", "{d}/l.jsonl"], "cannot read file"),
    (["train", "{d}/not_labels.jsonl", "--out", "{d}/r.json"], "not_labels.jsonl:1: field 'trials'"),
    (["train", "{d}/not_labels.jsonl", "--out", "{d}/r.json", "--split", "a,b"], "--split"),
    (["eval", "{d}/not_labels.jsonl", "{d}/tiers.yaml", "--out", "{d}/e"], "not a JSON router"),
])
def test_bad_input_is_one_line_exit_2(labelled, args, message):
    result = CliRunner().invoke(app, ["complexity", *(a.format(d=labelled) for a in args)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_shipped_gated_network_validates():
    res = llmnet("validate", "graphs/tiers_local.yaml", "graphs/complexity_gated.yaml", cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert (ROOT / "graphs" / "routers" / "arithmetic_router.json").exists()


def test_eval_folds_and_fixed_split(tmp_path):
    from tests.complexity.test_evaluate import ladder

    recs = ladder(30)
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    split = {"train": [r["id"] for r in recs[:18]], "validation": [r["id"] for r in recs[18:24]],
             "test": [r["id"] for r in recs[24:]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    res = llmnet("complexity", "train", "labels.jsonl", "--split", "split.json", "--out", "router.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "majority tier (small)" in res.stdout and "oracle" in res.stdout and "success target 0.80" in res.stdout
    res = llmnet("complexity", "eval", "labels.jsonl", "--folds", "3", "--out", "cv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "cv" / "report.json").read_text())
    assert report["evaluation"] == "3-fold cross-validation, tfidf" and report["n_test"] == 30
    assert all(len(p["accuracy_ci"]) == 2 for p in report["policies"].values())
    assert [row["target"] for row in report["success_targets"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
    result = CliRunner().invoke(app, ["complexity", "eval", str(tmp_path / "labels.jsonl"), "--out",
                                      str(tmp_path / "e")])
    assert result.exit_code == 2 and "--folds" in result.stderr


def test_eval_success_targets_and_budgets(tmp_path):
    from tests.complexity.test_budget import gains_ladder

    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gains_ladder(60)))
    result = CliRunner().invoke(app, ["complexity", "eval", str(tmp_path / "labels.jsonl"), "--folds", "3",
                                      "--success-targets", "0.3,0.5", "--budgets", "2.5",
                                      "--out", str(tmp_path / "cv")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cv" / "report.json").read_text())
    assert [row["target"] for row in report["success_targets"]] == [0.3, 0.5]
    assert {"router budget=success@0.3", "router budget=success@0.5", "router budget@2.5",
            "random @ equal cost (budget@2.5)"} <= set(report["policies"])
    assert "router budget@2.5" in result.stdout
    for bad, option in ((["--budgets", "0"], "--budgets"), (["--success-targets", "1.5"], "--success-targets"),
                        (["--budgets", "x"], "--budgets")):
        result = CliRunner().invoke(app, ["complexity", "eval", str(tmp_path / "labels.jsonl"), "--folds", "3",
                                          *bad, "--out", str(tmp_path / "e")])
        assert result.exit_code == 2 and option in result.stderr and "Traceback" not in result.stderr
