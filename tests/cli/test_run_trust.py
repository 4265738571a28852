"""`llmnet run` as a user meets it: loud failures, one run per folder, mistakes caught before any call."""

import json
import socket

from tests.cli.test_main import llmnet

SIM_NET = """
models: {sim: {backend: simulated, model: s, price: {input: 1, output: 1}}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  vote: {kind: vote, inputs: [gen]}
"""


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def unreachable_net(tmp_path):
    path = tmp_path / "down.yaml"
    path.write_text(SIM_NET.replace(
        "{backend: simulated, model: s, price: {input: 1, output: 1}}",
        f"{{backend: openai, model: m, base_url: 'http://127.0.0.1:{closed_port()}/v1', "
        f"limits: {{retries: 0, timeout: 5}}}}").replace("sim:", "m:").replace("model: sim", "model: m"))
    return path


def test_every_query_failing_exits_3_with_errors_grouped(tmp_path):
    res = llmnet("run", unreachable_net(tmp_path), "--data", "arithmetic", "--limit", "4", "--out", tmp_path / "o",
                 "--no-cache", "--no-progress")
    assert res.returncode == 3, res.stderr
    assert "4 of 4 queries ended in error" in res.stderr
    assert "4 x BackendUnavailable" in res.stderr and "Traceback" not in res.stderr
    assert "accuracy n/a" in res.stdout
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["errors"] == 4 and summary["errors_by_type"]["BackendUnavailable"]["count"] == 4
    assert summary["accuracy"] is None and summary["accuracy_all"] == 0.0
    again = llmnet("run", unreachable_net(tmp_path), "--data", "arithmetic", "--limit", "4", "--out", tmp_path / "o2",
                   "--no-cache", "--no-progress", "--allow-errors")
    assert again.returncode == 0, again.stderr
    assert "ended in error" in again.stderr


def test_same_run_resumes_other_run_refused(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET)
    base = ["run", tmp_path / "net.yaml", "--data", "arithmetic", "--out", tmp_path / "o", "--cache",
            tmp_path / "c.sqlite", "--no-progress"]
    assert llmnet(*base, "--limit", "5").returncode == 0
    same = llmnet(*base, "--limit", "5")
    assert same.returncode == 0 and "resuming: 5 of 5 queries already finished" in same.stderr
    other = llmnet(*base, "--limit", "6")
    assert other.returncode == 2 and "--overwrite" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 5
    replaced = llmnet(*base, "--limit", "6", "--overwrite")
    assert replaced.returncode == 0
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 6
    setk = llmnet(*base, "--limit", "6", "--seed", "4")
    assert setk.returncode == 2


def test_bad_out_paths_one_line_nothing_created(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET)
    (tmp_path / "afile").write_text("x")
    for out in ("", str(tmp_path / "afile"), str(tmp_path / "afile" / "sub")):
        res = llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "2", "--out", out,
                     "--cache", tmp_path / "cache" / "c.sqlite", "--no-progress", cwd=tmp_path)
        assert res.returncode == 2, (out, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "--out" in lines[0], lines
        assert not (tmp_path / "cache").exists()
        assert not (tmp_path / "results.jsonl").exists()


def test_prompt_field_typo_caught_before_any_call(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET.replace("{question}", "{questoin}"))
    res = llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "2", "--out", tmp_path / "o",
                 "--cache", tmp_path / "c.sqlite", "--no-progress")
    assert res.returncode == 2 and "did you mean {question}?" in res.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "c.sqlite").exists()
    val = llmnet("validate", tmp_path / "net.yaml", "--data", "arithmetic")
    assert val.returncode == 2 and "{questoin}" in val.stderr and "ok " not in val.stdout
    assert llmnet("validate", tmp_path / "net.yaml").returncode == 0  # without data, fields are unknown


def test_format_specs_in_templates_refused(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET.replace("{question}", "{question:>2000000000}"))
    res = llmnet("validate", tmp_path / "net.yaml")
    assert res.returncode == 2 and "format specs" in res.stderr


def test_every_mistake_before_the_first_call(tmp_path):
    """Each of these passed `validate` or failed only at run time; now one line, exit 2, nothing called."""
    sim = SIM_NET
    cases = {
        "set_bool_for_int": (sim.replace("samples: 3", "samples: '${K}'") + "params: {K: 3}\n",
                             ["--set", "K=true"], "not a yes/no value"),
        "set_nan": (sim.replace("samples: 3", "samples: 3, temperature: '${T}'") + "params: {T: 0.5}\n",
                    ["--set", "T=nan"], "finite number"),
        "yaml_nan": (sim.replace("samples: 3", "samples: 3, temperature: .nan"), [], "finite number"),
        "kind_typo": (sim.replace("kind: vote", "kind: vot"), [], "did you mean 'vote'?"),
        "local_model": (sim.replace("backend: simulated, model: s", "backend: local, model: smollm2-135"), [],
                        "did you mean 'smollm2-135m'?"),
    }
    for name, (text, extra, expected) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        for command in (["validate", path, *extra],
                        ["run", path, "--data", "arithmetic", "--limit", "2", "--out", tmp_path / name,
                         "--no-cache", "--no-progress", *extra]):
            res = llmnet(*command)
            assert res.returncode == 2, (name, command[0], res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0], (name, lines)
        assert not (tmp_path / name).exists()


def test_dataset_mistakes_are_one_line_with_did_you_mean(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET)
    for data, expected in (("arithmetc", "did you mean 'arithmetic'?"),
                           ("arithmetic:nn=3", "unknown option 'nn'"),
                           ("arithmetic:n=abc", "option n=abc needs a whole number"),
                           ("missing.jsonl", "dataset file 'missing.jsonl': no such file"),
                           ("/dev/zero", "not a regular file")):
        res = llmnet("run", tmp_path / "net.yaml", "--data", data, "--out", tmp_path / "o", "--no-cache",
                     "--no-progress")
        assert res.returncode == 2, (data, res.stderr)
        assert expected in res.stderr and "invalid literal" not in res.stderr, (data, res.stderr)


def test_network_files_that_are_not_regular_or_too_big(tmp_path):
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 600_000)
    includer = tmp_path / "inc.yaml"
    includer.write_text(SIM_NET.replace("nodes:", "subgraphs: {s: {include: pipe.yaml}}\nnodes:"))
    for path, expected in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                           (big, "more than"), (includer, "not a regular file")):
        res = llmnet("validate", path)
        assert res.returncode == 2 and expected in res.stderr, (path, res.stderr)


def test_yaml_merge_keys_load(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("models: {sim: {backend: simulated, model: s}}\nnodes:\n"
                    "  gen: &g {kind: generator, model: sim, samples: 3}\n"
                    "  gen2: {<<: *g, seed: 7, samples: 5}\n  vote: {kind: vote, inputs: [gen, gen2]}\n")
    res = llmnet("validate", path)
    assert res.returncode == 0, res.stderr
    from llmnet import load_network

    assert load_network(path).spec.nodes["gen2"].samples == 5
    assert load_network(path).spec.nodes["gen2"].model == "sim"


def test_show_a_run_folder_and_other_folders(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET)
    assert llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "5", "--out", tmp_path / "o",
                  "--no-cache", "--no-progress").returncode == 0
    res = llmnet("show", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    for text in ("accuracy (95% CI)", "per node", "per model", "gen", "cache hits"):
        assert text in res.stdout, text
    as_json = llmnet("show", tmp_path / "o", "--json")
    assert json.loads(as_json.stdout) == json.loads((tmp_path / "o" / "summary.json").read_text())
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "scaling.json").write_text(json.dumps({"network": "v", "k": [1, 3],
                                                             "buckets": [{"name": "easy", "acc": 0.9}],
                                                             "fits": {"easy": {"a1": 0.1}}}))
    res = llmnet("show", tmp_path / "s")
    assert res.returncode == 0 and "buckets" in res.stdout and "easy" in res.stdout and "a1" in res.stdout
    missing = llmnet("show", tmp_path / "nope")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_keep_text_stores_raw_completions(tmp_path):
    (tmp_path / "net.yaml").write_text(SIM_NET)
    assert llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "3", "--out", tmp_path / "o",
                  "--no-cache", "--no-progress", "--keep-text").returncode == 0
    rec = json.loads((tmp_path / "o" / "results.jsonl").read_text().splitlines()[0])
    assert len(rec["trace"]["gen"]["texts"]) == 3 and all(isinstance(t, str) for t in rec["trace"]["gen"]["texts"])
    assert llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "3", "--out", tmp_path / "p",
                  "--no-cache", "--no-progress").returncode == 0
    assert "texts" not in json.loads((tmp_path / "p" / "results.jsonl").read_text().splitlines()[0])["trace"]["gen"]


def test_boolean_flags_are_plain_flags_in_help():
    for command in (["run"], ["scale"], ["smart"], ["complexity", "label"], ["show"], ["validate"], []):
        res = llmnet(*command, "--help")
        assert res.returncode == 0 and "<bool>" not in res.stdout, (command, res.stdout)
