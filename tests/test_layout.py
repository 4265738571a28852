"""The floor plan: one folder per part, imports pointing one way, no module importing one that imports it back."""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "llmnet"
# higher may import lower; the order README and llmnet/__init__.py state
LEVEL = {"cli": 8, "integrations": 7, "scaling": 7, "smart": 7, "complexity": 7, "execute": 6, "nodes": 5,
         "backends": 5, "tasks": 4, "network": 3, "routing": 2, "errors": 1, "_lazy": 1}
# at most two imports may run upward, each with a comment saying why on its line
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Run-time imports of llmnet modules by each llmnet module (``if TYPE_CHECKING`` blocks excluded)."""
    found = {}
    for file in ROOT.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree)
                       if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for n in ast.walk(block)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmnet":
                folder = ROOT.parent.joinpath(*node.module.split("."))
                subs = [a.name for a in node.names if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()]
                deps.update(f"{node.module}.{s}" for s in subs)
                if len(subs) < len(node.names):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "llmnet")
        found[_module(file)] = deps
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and not parts[1].startswith("__") else None


def test_every_part_has_a_level():
    parts = {_part(m) for m in _imports()} - {None}
    assert parts <= set(LEVEL), f"folders without a place in the layering: {parts - set(LEVEL)}"


def test_imports_point_one_way():
    upward = {(m, d) for m, deps in _imports().items() for d in deps
              if _part(m) and _part(d) and _part(m) != _part(d) and LEVEL[_part(m)] < LEVEL[_part(d)]}
    assert upward <= ALLOWED_UPWARD, sorted(upward - ALLOWED_UPWARD)
    assert len(ALLOWED_UPWARD) <= 2


def test_no_module_imports_one_that_imports_it_back():
    graph = nx.DiGraph([(m, d) for m, deps in _imports().items() for d in deps if d != m])
    # a package's __init__ re-exporting its own submodules is not a circle between modules
    graph.remove_edges_from([(m, d) for m, d in list(graph.edges) if d.startswith(m + ".")])
    assert list(nx.simple_cycles(graph)) == []


def test_paper_wings_and_parts_are_folders():
    for folder in ("network", "nodes", "execute", "backends", "routing", "tasks", "scaling", "smart", "complexity",
                   "cli"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
    assert not (ROOT / "stats").exists()
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py", "__main__.py", "_lazy.py", "errors.py"]


def test_generic_routing_imports_no_wing():
    for module, deps in _imports().items():
        if _part(module) == "routing":
            assert not {d for d in deps if _part(d) in ("smart", "complexity", "scaling")}, module


def test_public_api():
    import llmnet

    for name in llmnet.__all__:
        assert hasattr(llmnet, name), name
    for name in ("run_network", "RunConfig", "load_dataset", "Router", "register_router", "NetworkBuilder"):
        assert name in llmnet.__all__


def test_every_wing_export_resolves():
    import importlib

    for wing in ("scaling", "smart", "complexity", "network", "tasks", "execute"):
        module = importlib.import_module(f"llmnet.{wing}")
        for name in module.__all__:
            assert getattr(module, name) is not None, f"llmnet.{wing}.{name}"
