"""``--ray [ADDRESS]`` on ``run``, ``scale``, ``sweep`` and ``complexity label``: its forms, the
install hint when the ``ray`` extra is missing, and a bad address failing within seconds.

Runs with a real Ray cluster are in ``tests/execute/test_ray.py``; here nothing needs one: a
bad address must fail before Ray is ever joined, and the bare form is shown to reach Ray's
default by pointing ``$RAY_ADDRESS`` at an address where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from llmnet.cli.common import ray_argv
from tests.complexity import write_tiers
from tests.conftest import ROOT

NET = """
name: sim-vote
models: {sim: {backend: simulated, model: s}}
task: {prompt: "Q: {question}\\nA:", answer: {kind: number}}
nodes:
  gen:
    kind: generator
    model: sim
    samples: ${K}
  vote: {kind: vote, inputs: [gen]}
params: {K: 3}
"""
INSTALL = "pip install 'llmnet-compound[ray]'"


def commands(tmp_path) -> dict[str, list[str]]:
    """Each command that takes --ray, as a user would type it (without --ray)."""
    net = tmp_path / "net.yaml"
    net.write_text(NET)
    tiers = write_tiers(tmp_path)
    return {
        "run": ["run", str(net), "--data", "arithmetic:n=4", "--out", str(tmp_path / "run"), "--no-cache",
                "--no-progress"],
        "scale": ["scale", str(net), "--data", "arithmetic:n=4", "--k", "1,3", "--pool", "3", "--out",
                  str(tmp_path / "scale"), "--no-cache"],
        "sweep": ["sweep", str(net), "--grid", "K=1,3", "--data", "arithmetic:n=4", "--out", str(tmp_path / "sweep"),
                  "--no-cache", "--no-progress"],
        "complexity label": ["complexity", "label", str(tiers), "--data", "arithmetic:n=4", "--out",
                             str(tmp_path / "labels.jsonl"), "--trials", "1", "--threshold", "1", "--no-cache",
                             "--no-progress"],
    }


def llmnet(args: list[str], env: dict[str, str] | None = None, without_ray: bool = False,
           timeout: float = 120) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environ.update(env or {})
    code = ("import sys\n" + ("sys.modules['ray'] = None\n" if without_ray else "") +
            f"sys.argv = ['llmnet'] + {args!r}\nfrom llmnet.cli.main import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=environ)


def test_ray_argv_takes_an_address_or_none():
    assert ray_argv(["run", "f.yaml", "--ray"]) == ["run", "f.yaml", "--ray="]
    assert ray_argv(["run", "--ray", "f.yaml", "--out", "o"]) == ["run", "--ray=", "f.yaml", "--out", "o"]
    assert ray_argv(["run", "f.yaml", "--ray", "--out", "o"]) == ["run", "f.yaml", "--ray=", "--out", "o"]
    for address in ("auto", "local", "10.0.0.5:6379", "head-node.example:6379", "ray://head:10001", "[::1]:6379"):
        assert ray_argv(["run", "f.yaml", "--ray", address]) == ["run", "f.yaml", "--ray", address]
    assert ray_argv(["run", "--ray=f.yaml"]) == ["run", "--ray=f.yaml"]  # = always takes the value as given
    assert ray_argv(["run", "--", "--ray"]) == ["run", "--", "--ray"]
    assert ray_argv(["run", "f.yaml", "--raygun"]) == ["run", "f.yaml", "--raygun"]


@pytest.mark.parametrize("name", ["run", "scale", "sweep", "complexity label"])
def test_without_the_extra_bare_ray_says_how_to_install(tmp_path, name):
    for form in (["--ray"], ["--ray", "127.0.0.1:6379"]):
        done = llmnet(commands(tmp_path)[name] + form, without_ray=True)
        assert done.returncode == 2, (form, done.stdout, done.stderr)
        assert INSTALL in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not (tmp_path / "run" / "results.jsonl").exists()  # refused before any work


def _silent_server() -> socket.socket:
    """A TCP port that accepts connections (the kernel does) and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_a_bad_address_fails_within_seconds_on_every_command(tmp_path):
    silent = _silent_server()
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        no, quiet = f"127.0.0.1:{refused.getsockname()[1]}", f"127.0.0.1:{silent.getsockname()[1]}"
        cases = {"run": (no, "refused"), "scale": (quiet, "no answer within"), "sweep": (f"ray://{no}", "refused"),
                 "complexity label": (quiet, "no answer within")}
        for name, (address, why) in cases.items():
            started = time.monotonic()
            done = llmnet(commands(tmp_path)[name] + ["--ray", address], timeout=60)
            took = time.monotonic() - started
            assert done.returncode == 2, (name, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and address in lines[0] and why in lines[0].lower(), (name, done.stderr)
            assert "Traceback" not in done.stderr
            assert took < 15, (name, took)  # ray.init alone waits 40 s and more here
    finally:
        silent.close()
        refused.close()


def test_an_address_that_is_no_address_is_one_line(tmp_path):
    done = llmnet(commands(tmp_path)["run"] + ["--ray=headnode"], timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'headnode' is not HOST:PORT" in done.stderr


def test_a_port_that_is_not_ray_is_named_so(tmp_path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        done = llmnet(commands(tmp_path)["run"] + ["--ray", address], timeout=60)
        assert done.returncode == 2 and f"{address} is not a Ray cluster" in done.stderr, done.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_bare_ray_is_rays_default_address(tmp_path):
    """Bare ``--ray`` (even before the file) reaches Ray's default: ``$RAY_ADDRESS`` when set."""
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{refused.getsockname()[1]}"
    try:
        args = commands(tmp_path)["run"]
        argvs = [["run", "--ray", *args[1:]]] + [[*argv, "--ray"] for argv in commands(tmp_path).values()]
        for argv in argvs:  # on every command, bare --ray reaches Ray, never a local run
            done = llmnet(argv, env={"RAY_ADDRESS": address}, timeout=60)
            assert done.returncode == 2 and f"cannot reach Ray at {address}" in done.stderr, (argv, done.stderr)
    finally:
        refused.close()


@pytest.mark.parametrize("name", ["run", "scale", "sweep", "complexity label"])
def test_help_shows_the_optional_address_and_the_extra(name):
    from typer.testing import CliRunner

    from llmnet.cli.main import app

    done = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "400"})
    assert done.exit_code == 0
    assert "[ADDRESS]" in done.output and "pip install 'llmnet-compound[ray]'" in done.output
