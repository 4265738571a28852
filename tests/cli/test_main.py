"""The CLI as users meet it: real subprocesses, exit codes, no tracebacks."""

import json
import subprocess
import sys

from tests.conftest import GRAPHS, ROOT


def llmnet(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "llmnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_validate_examples():
    res = llmnet("validate", *sorted(GRAPHS.glob("*.yaml")))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("ok ") == len(list(GRAPHS.glob("*.yaml")))


BROKEN = {
    "unknown_input.yaml": ("models: {m: {backend: simulated, model: s}}\nnodes:\n  g: {kind: generator, model: m}\n"
                           "  v: {kind: vote, inputs: [g2]}\noutput: v\n", "nodes.v.inputs[0]: unknown node 'g2'"),
    "syntax.yaml": ("nodes:\n  a: {kind: generator\n  b: [\n", ":3:4: YAML syntax error"),
    "unsafe.yaml": ("nodes: !!python/object/apply:os.system ['echo pwned']\n", "only plain YAML"),
    "unknown_key.yaml": ("models: {m: {backend: simulated, model: s}}\nnodes:\n  g: {kind: generator, model: m, "
                         "tempreature: 1}\n", "nodes.g.tempreature: unknown key"),
    "not_a_mapping.yaml": ("- just\n- a list\n", "must be a mapping"),
    "empty.yaml": ("", "the file is empty"),
}


def test_broken_files_one_line_each_exit_2(tmp_path):
    for name, (text, expected) in BROKEN.items():
        path = tmp_path / name
        path.write_text(text)
        res = llmnet("validate", path)
        assert res.returncode == 2, (name, res.stderr)
        assert "Traceback" not in res.stderr and "pwned" not in res.stdout
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and name in lines[0], (name, res.stderr)


def test_debug_shows_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nodes: {}\n")
    res = llmnet("--debug", "validate", path)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_missing_file_is_a_clean_error(tmp_path):
    res = llmnet("validate", tmp_path / "nope.yaml")
    assert res.returncode == 2 and "cannot read file" in res.stderr and "Traceback" not in res.stderr


def test_set_overrides_parameters():
    res = llmnet("validate", GRAPHS / "vote.yaml", "--set", "K=15")
    assert res.returncode == 0 and "vote-15" in res.stdout
    res = llmnet("validate", GRAPHS / "vote.yaml", "--set", "KK=15")
    assert res.returncode == 2 and "no parameter 'KK'" in res.stderr and "did you mean 'K'" in res.stderr


def test_schema_is_json_schema():
    res = llmnet("schema")
    assert res.returncode == 0
    schema = json.loads(res.stdout)
    assert schema["title"] == "llmnet network" and "nodes" in schema["properties"]
    assert "GateNode" in schema["$defs"] and "discriminator" in json.dumps(schema)


def test_graph_mermaid_and_png(tmp_path):
    png = tmp_path / "g.png"
    res = llmnet("graph", GRAPHS / "gated.yaml", "--png", png)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("flowchart TD") and "route__strong__vote" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
