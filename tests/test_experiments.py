"""Every script under experiments/ runs in --smoke mode, so none can go stale; the README's table is generated."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import HAS_LOCAL, ROOT

SCRIPTS = sorted((ROOT / "experiments").glob("*.py"))
LOCAL_MODEL = {"scaling_local.py", "complexitynet_local.py", "smart_local.py", "bench_local.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_experiment_runs_in_smoke_mode(script, tmp_path):
    text = script.read_text(encoding="utf-8")
    assert "--smoke" in text, f"{script.name} has no --smoke mode"
    if script.name in LOCAL_MODEL and not HAS_LOCAL:
        pytest.skip("needs the [local] extra (llama-cpp-python and the bundled models)")
    args = [sys.executable, str(script), "--smoke"]
    if '"--json"' in text:
        args += ["--json", str(tmp_path / "out.json")]
    if '"--out"' in text:
        args += ["--out", str(tmp_path / "out")]
    if '"--cache"' in text:
        args += ["--cache", str(tmp_path / "cache.sqlite")]
    res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "passive"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    written = list(tmp_path.rglob("*.json"))
    if script.name not in ("fake_openai_server.py", "readme_table.py"):
        assert written, f"{script.name} --smoke wrote no JSON"


def test_readme_experiments_table_is_generated_from_the_json():
    res = subprocess.run([sys.executable, "experiments/readme_table.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    table = re.search(r"<!-- experiments:start -->(.*)<!-- experiments:end -->",
                      (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert table and table.group(1).count("\n| `") >= 9
