"""Hostile input across the CLI: network files, datasets and options.

Every case ends in exit 0, or exit 2 with one line per problem (``error: ...``), or the
documented skip of ``--skip-bad`` (``skipped N bad dataset line(s)``), never a
traceback; and no hostile run corrupts an earlier run's results or the cache.

Volume runs in process (``typer.testing.CliRunner``, which reports any exception that
escaped the command); a handful of cases run the real CLI in a subprocess, so that the
one-line check sees the real stderr. The ``test_known_*`` cases are the crashes this
suite first found (bad YAML scalars, unreadable JSON, bad cache paths, raw line breaks in
arguments, usage errors, lone surrogates in ids); they stay as regression tests.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmnet.cli.main import app
from llmnet.errors import DatasetError
from llmnet.tasks.datasets import load_dataset_counted
from tests.conftest import GRAPHS, ROOT, mutate

SIM_NET = """\
name: sim
models: {sim: {backend: simulated, model: s}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (real stdout and stderr)."""
    return subprocess.run([sys.executable, "-m", "llmnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def invoke(*args):
    """The CLI in process; ``exception`` is whatever escaped the command."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean(code: int, stderr: str, exception: BaseException | None = None) -> None:
    """Exit 0, or exit 2 with nothing but ``error: ...`` lines; never a traceback."""
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert code in (0, 2), stderr
    assert "Traceback" not in stderr
    if code == 2:
        lines = stderr.strip().splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), stderr


def assert_invoked_clean(res) -> None:
    assert_clean(res.exit_code, res.stderr, res.exception)


def assert_one_line_error(res: subprocess.CompletedProcess, *expected: str) -> None:
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(e in lines[0] for e in expected), lines[0]


@pytest.fixture
def sim_net(tmp_path) -> Path:
    path = tmp_path / "sim.yaml"
    path.write_text(SIM_NET)
    return path


# --------------------------------------------------------------------------- network files
@settings(FUZZ, max_examples=60)
@given(st.binary(max_size=400))
def test_random_bytes_as_a_network_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("net") / "n.yaml"
    path.write_bytes(data)
    assert_invoked_clean(invoke("validate", path))


YAML_PIECES = ["nodes:", "\n", "  ", "{", "}", "[", "]", ", ", ": ", "- ", "? ", "&a ", "*a", "<<: *a", "---\n",
               "...\n", "${K}", "kind: generator", "kind: vote", "inputs: [gen]", "model: m", "'", '"', "#", "\t",
               "\r\n", "\ufeff", "%YAML 1.1\n", "!!str ", "!!python/object:os.system ", "!custom ", "~", ".inf",
               "0x1f", "1e999", "-1", "gen", "output: gen", "\x00", "\u2028", "é"]


@settings(FUZZ, max_examples=60)
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=30))
def test_yaml_like_noise_as_a_network_file(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("net") / "n.yaml"
    path.write_text("".join(pieces), encoding="utf-8")
    assert_invoked_clean(invoke("validate", path))


def _simulated(data):
    """An example graph with every model swapped for the simulated backend."""
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        for name, model in data["models"].items():
            keep = {k: v for k, v in model.items() if k in ("price", "limits")} if isinstance(model, dict) else {}
            data["models"][name] = {**keep, "backend": "simulated", "model": "s"}
    return data


EXAMPLES = sorted(GRAPHS.glob("*.yaml"))


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(EXAMPLES), st.integers(0, 2**32 - 1), st.integers(0, 4))
def test_mutated_example_graphs_run_or_fail_cleanly(tmp_path_factory, example, seed, n):
    """Mutated examples (on the simulated backend) are run end to end: a run that starts
    finishes with complete, parseable results."""
    tmp = tmp_path_factory.mktemp("mut")
    rng = random.Random(seed)
    data = _simulated(yaml.safe_load(example.read_text()))
    for _ in range(n):
        data = mutate(data, rng)
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    res = invoke("run", path, "--data", "arithmetic:n=3", "--out", tmp / "out", "--no-cache", "--no-progress")
    assert_invoked_clean(res)
    if res.exit_code == 0:
        lines = (tmp / "out" / "results.jsonl").read_text().splitlines()
        assert len(lines) == 3 and all(json.loads(line)["id"] for line in lines)
        assert json.loads((tmp / "out" / "summary.json").read_text())["complete"] is True


def test_network_path_cases_in_a_real_process(tmp_path, sim_net):
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(255, -1, -1)) * 4)
    assert_one_line_error(cli("run", garbage, "--data", "arithmetic", "--out", tmp_path / "o"), "not UTF-8")
    assert_one_line_error(cli("run", tmp_path, "--data", "arithmetic", "--out", tmp_path / "o"),
                          "cannot read file", "directory")
    assert not (tmp_path / "o").exists()


KNOWN_YAML_CRASHES = ["a: !!float\n", "a: !!timestamp 2001-13-99x\n", "a: !!int zz\n",
                      "a: " + "9" * 5000 + "\n", "a: !!timestamp 2001-01-01 99:99:99\n"]


@pytest.mark.parametrize("text", KNOWN_YAML_CRASHES, ids=["float", "timestamp", "int", "int5000", "hour"])
def test_known_bad_scalars_in_a_network_file(tmp_path, text):
    path = tmp_path / "n.yaml"
    path.write_text(text)
    assert_invoked_clean(invoke("validate", path))


def test_known_bad_scalar_in_a_set_override():
    assert_invoked_clean(invoke("validate", GRAPHS / "vote.yaml", "--set", "K=!!float"))


# --------------------------------------------------------------------------- datasets
def _good(i: int) -> bytes:
    return json.dumps({"id": f"good-{i}", "question": f"{i} + 1", "answer": str(i + 1)}).encode()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                               st.sampled_from(["id", "question", "answer", "choices", "difficulty", "p_correct",
                                                "x"]), kids, max_size=4), max_leaves=10)
WRONG_TYPES = [b'{"id": 1, "question": 5}', b'[1, 2]', b'"just a string"', b"null", b"{}",
               b'{"question": "x", "choices": {"a": 1}}', b'{"question": "x", "difficulty": "hard"}',
               b'{"question": "x", "p_correct": 5}', b'{"question": "x", "id": {"a": 1}}',
               b'{"question": "x", "answer": [1]}', b'{"question": "x", "difficulty": true}',
               b'{"question": "x", "p_correct": NaN}']
BAD_LINES = st.one_of(
    st.binary(min_size=1, max_size=60),                                       # garbage, often not UTF-8
    st.text(max_size=30).map(lambda t: ("{" + t).encode()),                   # broken JSON
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),                         # JSON of any shape
    st.sampled_from(WRONG_TYPES),
    st.sampled_from([b"\xff\xfe\xfd", b"caf\xe9", b"\xc3\x28", b"\xed\xa0\x80"]),  # not UTF-8
).filter(lambda line: b"\n" not in line)


def _blank(line: bytes) -> bool:
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


@settings(FUZZ, max_examples=120)
@given(st.lists(st.tuples(st.booleans(), BAD_LINES), max_size=12), st.booleans())
def test_jsonl_with_bad_lines(tmp_path_factory, lines, skip_bad):
    """A bad line is a one-line DatasetError naming file:line, or with --skip-bad a skip
    that is counted; every good line survives."""
    raw = [_good(i) if good else bad for i, (good, bad) in enumerate(lines)]
    path = tmp_path_factory.mktemp("data") / "d.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    counted = [line for line in raw if not _blank(line)]
    try:
        queries, bad = load_dataset_counted(str(path), skip_bad=skip_bad)
    except DatasetError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message
        assert skip_bad or not counted or "--skip-bad" in message or "no queries" in message
        return
    ids = {q.id for q in queries}
    assert {f"good-{i}" for i, (good, _) in enumerate(lines) if good} <= ids
    assert len(queries) + bad == len(counted)
    assert skip_bad or bad == 0


def _mbpp_good(i: int) -> bytes:
    return json.dumps({"task_id": f"t{i}", "text": f"Return {i}.", "code": f"def f():\n    return {i}",
                       "test_list": [f"assert f() == {i}"]}).encode()


@settings(FUZZ, max_examples=80)
@given(st.lists(st.tuples(st.booleans(), BAD_LINES), max_size=10), st.booleans())
def test_mbpp_jsonl_with_bad_lines(tmp_path_factory, lines, skip_bad):
    raw = [_mbpp_good(i) if good else bad for i, (good, bad) in enumerate(lines)]
    path = tmp_path_factory.mktemp("data") / "mbpp.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    try:
        queries, bad = load_dataset_counted(f"mbpp:{path}", skip_bad=skip_bad)
    except DatasetError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    goods = {f"mbpp/t{i}" for i, (good, _) in enumerate(lines) if good}
    assert goods <= {q.id for q in queries}
    assert all(q.fields["tests"] and q.fields["kind"] == "code" for q in queries)
    assert skip_bad or bad == 0


def test_dataset_cases(tmp_path, sim_net):
    """Empty, binary, non-UTF-8, wrong types and a 20 MB line; the binary and huge ones
    also through the real CLI."""
    out = tmp_path / "o"
    cases = {"empty.jsonl": (b"", "no queries"),
             "binary.jsonl": (bytes(range(255, -1, -1)) * 8, "binary.jsonl:1: not UTF-8"),
             "latin1.jsonl": (_good(0) + b"\n" + '{"question": "caf\xe9"}'.encode("latin-1") + b"\n",
                              "latin1.jsonl:2: not UTF-8"),
             "types.jsonl": (b"\n".join([_good(0), *WRONG_TYPES]) + b"\n", "types.jsonl:2: 'question' must be"),
             "huge.jsonl": (_good(0) + b"\n" + json.dumps({"id": "h", "question": "x" * (20 << 20)}).encode()
                            + b"\n", "huge.jsonl:2: line longer than")}
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        res = invoke("run", sim_net, "--data", tmp_path / name, "--out", out, "--no-cache")
        assert_invoked_clean(res)
        assert res.exit_code == 2 and expected in res.stderr and not out.exists(), res.stderr
    for name in ("binary.jsonl", "huge.jsonl"):
        assert_one_line_error(cli("run", sim_net, "--data", tmp_path / name, "--out", out, "--no-cache"),
                              cases[name][1])
    res = cli("run", sim_net, "--data", tmp_path / "huge.jsonl", "--out", out, "--no-cache", "--skip-bad")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == "skipped 1 bad dataset line(s)"
    assert [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()] == ["good-0"]


DEEP = b"[" * 100_000 + b"]" * 100_000
KNOWN_DATASET_CRASHES = {
    "deep-jsonl": ("", DEEP),                                               # RecursionError
    "bigint-jsonl": ("", b'{"question": "x", "answer": ' + b"9" * 5000 + b"}"),  # ValueError (int digits)
    "deep-mbpp": ("mbpp:", DEEP),                                           # RecursionError
    "u2028-mbpp": ("mbpp:", json.dumps({"text": "a\u2028b", "code": "def f(): pass",
                                        "test_list": ["assert f() is None"]}, ensure_ascii=False).encode()),
}


@pytest.mark.parametrize("case", KNOWN_DATASET_CRASHES)
def test_known_dataset_crashes(tmp_path, case):
    prefix, line = KNOWN_DATASET_CRASHES[case]
    path = tmp_path / "d.jsonl"
    path.write_bytes(line + b"\n")
    try:
        queries, _ = load_dataset_counted(prefix + str(path), skip_bad=True)
    except DatasetError:
        assert case != "u2028-mbpp"
    else:
        assert len(queries) == (case == "u2028-mbpp")


def test_mbpp_route_refuses_devices_and_directories(tmp_path):
    for path in ("/dev/zero", tmp_path):
        with pytest.raises(DatasetError, match="not a regular file"):
            load_dataset_counted(f"mbpp:{path}")


# --------------------------------------------------------------------------- options
@settings(FUZZ, max_examples=60)
@given(limit=st.none() | st.integers(-10**9, 6), concurrency=st.integers(1, 10**6),
       max_cost=st.none() | st.floats(allow_nan=False), seed=st.integers(-2**70, 2**70),
       sets=st.lists(st.text(st.characters(blacklist_characters="!", blacklist_categories=("Cs",)), max_size=12)
                     .filter(lambda t: len(f"<{t}>".splitlines()) == 1), max_size=2))
def test_option_values(tmp_path_factory, sim_net, limit, concurrency, max_cost, seed, sets):
    tmp = tmp_path_factory.mktemp("opt")
    args = ["run", sim_net, "--data", "arithmetic:n=4", "--out", tmp / "out", "--cache", tmp / "c.sqlite",
            "--concurrency", concurrency, "--seed", seed, "--no-progress"]
    args += ["--limit", limit] if limit is not None else []
    args += ["--max-cost", repr(max_cost)] if max_cost is not None else []
    for item in sets:
        args += ["--set", item]
    res = invoke(*args)
    assert_invoked_clean(res)
    if res.exit_code == 0:
        summary = json.loads((tmp / "out" / "summary.json").read_text())
        assert summary["queries"] == min(4, limit or 4) or summary["stopped"]


def test_option_cases(tmp_path, sim_net):
    out = tmp_path / "o"
    base = ("run", sim_net, "--data", "arithmetic:n=3", "--out", out, "--no-cache")
    assert_one_line_error(cli(*base, "--limit", "-7"), "'--limit'", "greater than or equal to 1")
    assert_one_line_error(cli(*base, "--max-cost", "-1"), "--max-cost must be a number >= 0")
    assert_one_line_error(cli(*base, "--set", "NOPE=1"), "no parameter 'NOPE'")
    for args, expected in [(("--limit", "0"), "greater than or equal to 1"),
                           (("--max-cost", "-inf"), "--max-cost must be a number >= 0"),
                           (("--max-cost", "nan"), "--max-cost must be a number >= 0"),
                           (("--set", "=1"), "is not NAME=VALUE")]:
        res = invoke(*base, *args)
        assert_invoked_clean(res)
        assert res.exit_code == 2 and expected in res.stderr
    for data, expected in [(tmp_path / "missing.jsonl", "no such file"), (tmp_path, "not a regular file"),
                           ("mbpp:" + str(tmp_path / "missing.jsonl"), "cannot read")]:
        res = invoke("run", sim_net, "--data", data, "--out", out)
        assert_invoked_clean(res)
        assert res.exit_code == 2 and expected in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [("--set", "K\nerror: forged"), ("--set", "K\x1e"), ("--data", "nope\nerror: x")],
                         ids=["set-newline", "set-record-separator", "data-newline"])
def test_known_line_breaks_in_arguments_split_the_error_line(sim_net, tmp_path, args):
    options = {"--data": "arithmetic:n=2", "--out": str(tmp_path / "o"), args[0]: args[1]}
    res = invoke("run", sim_net, *[x for option in options.items() for x in option])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_known_usage_errors_are_not_one_line(sim_net, tmp_path):
    res = invoke("run", sim_net, "--data", "arithmetic", "--out", tmp_path / "o", "--concurrency", "0")
    assert_invoked_clean(res)


@pytest.mark.parametrize("what", ["directory", "not-a-database", "empty-path"])
def test_known_bad_cache_paths(tmp_path, sim_net, what):
    cache = {"directory": tmp_path, "not-a-database": sim_net, "empty-path": ""}[what]
    res = invoke("run", sim_net, "--data", "arithmetic:n=2", "--out", tmp_path / "o", "--cache", cache)
    assert_invoked_clean(res)


# --------------------------------------------------------------------------- no corruption
def _integrity(cache: Path) -> tuple[str, int]:
    db = sqlite3.connect(cache)
    try:
        (check,) = db.execute("PRAGMA integrity_check").fetchone()
        (rows,) = db.execute("SELECT COUNT(*) FROM samples").fetchone()
        return check, rows
    finally:
        db.close()


def _hostile_runs(tmp: Path, net: Path, out: Path, cache: Path):
    """(label, CLI args) of runs that must fail before touching ``out`` or ``cache``."""
    bad_net = tmp / "bad.yaml"
    bad_net.write_bytes(b"nodes: [\xff\n")
    wrong = tmp / "wrong.yaml"
    wrong.write_text(SIM_NET.replace("samples: 3", "samples: -3"))
    binary = tmp / "binary.jsonl"
    binary.write_bytes(bytes(range(255, -1, -1)))
    empty = tmp / "empty.jsonl"
    empty.write_bytes(b"")
    types = tmp / "types.jsonl"
    types.write_bytes(b"\n".join(WRONG_TYPES))
    huge = tmp / "huge.jsonl"
    huge.write_bytes(b'{"question": "' + b"x" * (11 << 20) + b'"}\n')
    common = ("--out", out, "--cache", cache, "--no-progress")
    return [
        ("non-UTF-8 network", ("run", bad_net, "--data", "arithmetic:n=3", *common)),
        ("invalid network", ("run", wrong, "--data", "arithmetic:n=3", *common)),
        ("directory as network", ("run", tmp, "--data", "arithmetic:n=3", *common)),
        ("binary dataset", ("run", net, "--data", binary, *common)),
        ("empty dataset", ("run", net, "--data", empty, *common)),
        ("wrong types", ("run", net, "--data", types, *common)),
        ("every line bad, skipped", ("run", net, "--data", types, "--skip-bad", *common)),
        ("huge line", ("run", net, "--data", huge, *common)),
        ("missing dataset", ("run", net, "--data", tmp / "nope.jsonl", *common)),
        ("directory as dataset", ("run", net, "--data", tmp, *common)),
        ("mbpp without a file", ("run", net, "--data", "mbpp:", *common)),
        ("limit 0", ("run", net, "--data", "arithmetic:n=3", "--limit", "0", *common)),
        ("negative max-cost", ("run", net, "--data", "arithmetic:n=3", "--max-cost", "-1", *common)),
        ("unknown --set", ("run", net, "--data", "arithmetic:n=3", "--set", "Q=1", *common)),
        ("bad option value", ("run", net, "--data", "arithmetic:n=3", "--concurrency", "0", *common)),
    ]




def test_hostile_runs_leave_an_earlier_run_and_the_cache_intact(tmp_path, sim_net):
    out, cache = tmp_path / "out", tmp_path / "cache" / "samples.sqlite"
    good = invoke("run", sim_net, "--data", "arithmetic:n=4", "--out", out, "--cache", cache, "--no-progress")
    assert good.exit_code == 0, good.output
    before = {name: (out / name).read_bytes() for name in ("results.jsonl", "summary.json")}
    assert _integrity(cache) == ("ok", 12)
    for label, args in _hostile_runs(tmp_path, sim_net, out, cache):
        res = invoke(*args)
        assert res.exit_code == 2, (label, res.output)
        assert_invoked_clean(res)
        assert {name: (out / name).read_bytes() for name in before} == before, label
        assert sorted(p.name for p in out.iterdir()) == ["results.jsonl", "run.json", "summary.json"], label
        assert _integrity(cache) == ("ok", 12), label
    # a real process, too, and a run that does start: same queries, bad lines skipped
    res = cli("run", sim_net, "--data", tmp_path / "binary.jsonl", "--out", out, "--cache", cache)
    assert_one_line_error(res, "not UTF-8")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\xff\n{broken\n")
    res = invoke("run", sim_net, "--data", mixed, "--skip-bad", "--out", out, "--cache", cache)
    assert res.exit_code == 2 and "every line bad" in res.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    assert _integrity(cache) == ("ok", 12)


def test_lone_surrogate_id_is_refused_at_read_with_nothing_written(tmp_path, sim_net):
    # JSON allows "\ud800" but UTF-8 cannot store it: it used to fail later, inside the run.
    out = tmp_path / "out"
    data = tmp_path / "s.jsonl"
    data.write_text('{"id": "a\\ud800", "question": "1 + 1", "answer": "2"}\n')
    res = invoke("run", sim_net, "--data", data, "--out", out, "--no-cache")
    assert res.exit_code == 2 and "s.jsonl:1: a string holds a lone surrogate" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
