from pathlib import Path

import pytest

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
