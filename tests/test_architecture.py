"""The package's shape, checked: imports are acyclic, only ``backends/`` knows backends by name, and only
``settings.py`` reads environment variables. Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from pyflux_mnist.backends import BACKENDS

PACKAGE = Path(__file__).resolve().parent.parent / "pyflux_mnist"


def _modules() -> dict[str, Path]:
    """``{"pyflux_mnist.backends.base": path, ...}`` for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, at any depth of its code (lazy imports count too:
    a cycle through a function-level import is still a cycle in the design), except those imported only
    under ``if TYPE_CHECKING:`` (annotations, never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    annotations_only = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` imports the submodule; `from pkg import name` runs pkg's __init__.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks (never run)."""
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for block in node.body:
                nodes.update(id(sub) for sub in ast.walk(block))
    return nodes


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walker_sees_the_package() -> None:
    graph = _graph()
    assert "pyflux_mnist.backends.numpy_trainer" in graph
    assert "pyflux_mnist.backends.numpy_maths" in graph["pyflux_mnist.backends.numpy_trainer"]
    assert "pyflux_mnist.backends.base" in graph["pyflux_mnist.backends.numpy_maths"]


def test_the_walker_leaves_out_imports_for_annotations_only() -> None:
    """``if TYPE_CHECKING: from .model import Model`` is never run: no edge (it once counted, because the
    walker compared the imported name, ``Model``, with the module's, ``model``)."""
    graph = _graph()
    assert "pyflux_mnist.model" not in graph["pyflux_mnist.charts"]  # TYPE_CHECKING only there
    assert "pyflux_mnist.picture_files" in graph["pyflux_mnist.charts"]  # a real import
    assert "pyflux_mnist.mnist" in graph["pyflux_mnist.training"]  # a lazy import still counts


def test_the_walker_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_are_acyclic() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _backend_name_comparisons(path: Path) -> list[str]:
    """``x == "torch"``, ``x in ("numpy", "flux")``, ``match x: case "jax"`` and the like."""
    names = set(BACKENDS)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                consts = [operand] if isinstance(operand, ast.Constant) else []
                if isinstance(operand, (ast.Tuple, ast.List, ast.Set)):
                    consts = [e for e in operand.elts if isinstance(e, ast.Constant)]
                found += [f"line {node.lineno}: {c.value!r}" for c in consts if c.value in names]
        elif (
            isinstance(node, ast.MatchValue)
            and isinstance(node.value, ast.Constant)
            and node.value.value in names
        ):
            found.append(f"line {node.lineno}: case {node.value.value!r}")
    return found


def test_only_backends_compare_a_backend_name() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if "backends" not in path.relative_to(PACKAGE).parts and (hits := _backend_name_comparisons(path))
    }
    assert offenders == {}, f"ask the registry instead: {offenders}"


def test_the_name_check_catches_comparisons(tmp_path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('if b == "torch" or b in ("numpy", "x"):\n    pass\nif b == "sgemm":\n    pass\n')
    assert _backend_name_comparisons(probe) == ["line 1: 'torch'", "line 1: 'numpy'"]


def _environment_reads(path: Path) -> list[str]:
    """``os.environ.get(...)``, ``os.environ[...]``, ``os.getenv(...)``, ``"X" in os.environ``, and the
    same through a name bound to ``os.environ`` (``env = os.environ if environ is None else environ``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    environs = {"os.environ"}
    for node in ast.walk(tree):  # aliases: a name assigned from an expression that mentions os.environ
        if isinstance(node, ast.Assign) and "os.environ" in ast.unparse(node.value):
            environs.update(ast.unparse(t) for t in node.targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "getenv" or (f.attr == "get" and ast.unparse(f.value) in environs):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in environs
        ) or (isinstance(node, ast.Compare) and any(ast.unparse(c) in environs for c in node.comparators)):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_environment_check_catches_reads(tmp_path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        'import os\na = os.environ.get("A")\nb = os.environ["B"]\nc = "C" in os.environ\n'
        'env = os.environ if x is None else x\nd = env.get("D")\ne = env["E"]\nenv["F"] = "1"\n'
    )
    hits = [hit.split(":")[0] for hit in _environment_reads(probe)]
    assert hits == ["line 2", "line 3", "line 4", "line 6", "line 7"]


def test_only_settings_reads_the_environment() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "settings.py" and (hits := _environment_reads(path))
    }
    assert offenders == {}, f"define the variable in pyflux_mnist/settings.py and read it there: {offenders}"


#: Where a recipe name may become a recipe: the registry that defines them, and the run module.
RECIPE_RESOLVERS = {"recipes.py", "run.py"}


def _recipe_lookups(path: Path) -> list[str]:
    """``get_recipe(...)``, ``RECIPES[...]`` and ``RECIPES.get(...)``: a recipe looked up by its name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        called = ast.unparse(node.func) if isinstance(node, ast.Call) else ""
        indexed = ast.unparse(node.value) if isinstance(node, ast.Subscript) else ""
        lookup = called.rpartition(".")[2] == "get_recipe" or called.endswith("RECIPES.get")
        if lookup or indexed.rpartition(".")[2] == "RECIPES":
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_recipe_check_catches_lookups(tmp_path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from pyflux_mnist import recipes\nfrom pyflux_mnist.recipes import RECIPES, get_recipe\n"
        'a = get_recipe("keras")\nb = RECIPES["rashid"]\nc = recipes.RECIPES.get(name)\n'
        "d = recipes.get_recipe(name)\nfor r in RECIPES.values():\n    pass\n"
    )
    assert [hit.split(":")[0] for hit in _recipe_lookups(probe)] == ["line 3", "line 4", "line 5", "line 6"]


def test_only_the_run_module_resolves_a_recipe_by_name() -> None:
    """A run is described once (pyflux_mnist/run.py): every entry point asks it, so a name is never
    resolved, checked and resolved again on the way to the backend."""
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in RECIPE_RESOLVERS and (hits := _recipe_lookups(path))
    }
    assert offenders == {}, f"build a Run (pyflux_mnist.run) instead: {offenders}"
