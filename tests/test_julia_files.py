"""The Julia sources and their packaging, checked without Julia: they parse, use only today's Flux API, and
ship in the wheel next to juliapkg.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyflux_mnist.backends import julia_bridge

REPO = Path(__file__).resolve().parent.parent
JL_FILES = sorted((REPO / "julia").rglob("*.jl"))
FLUX_UUID = "587475ba-b771-5e3f-ad9e-33799f191a9c"


def _parser():
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_julia = pytest.importorskip("tree_sitter_julia")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _nodes(node):
    yield node
    for child in node.children:
        yield from _nodes(child)


def test_the_julia_files_exist():
    names = {p.relative_to(REPO).as_posix() for p in JL_FILES}
    assert {"julia/PyFluxMNIST.jl", "julia/tutorial.jl", "julia/test/runtests.jl"} <= names


@pytest.mark.parametrize("path", JL_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_julia_file_parses(path: Path):
    tree = _parser().parse(path.read_bytes())
    bad = [
        f"{n.type} at line {n.start_point[0] + 1}: {n.text[:60]!r}"
        for n in _nodes(tree.root_node)
        if n.type == "ERROR" or n.is_missing
    ]
    assert not bad, "\n".join(bad)


def _fatou() -> str:
    """The ``fatou`` binary (PyPI ``fatou``, in the dev extra): a Rust Julia parser and linter whose parser
    follows JuliaSyntax, Julia's own parser since 1.10, where tree-sitter-julia is more lenient."""
    exe = shutil.which("fatou") or shutil.which("fatou", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("fatou is not installed: pip install -e '.[dev]'")
    return exe


def _fatou_parse(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_fatou(), "--no-config", "--color", "never", "parse", "--to", "sexpr", str(path)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("path", JL_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_julia_file_parses_with_fatou(path: Path):
    result = _fatou_parse(path)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "diagnostic" not in out and "(error" not in out, out[-3000:]


def test_fatou_lint_is_clean():
    command = [_fatou(), "--no-config", "--color", "never", "lint", *map(str, JL_FILES)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "clean" in result.stdout + result.stderr


def test_fatou_rejects_what_tree_sitter_accepts(tmp_path: Path):
    """The old last line of tutorial.jl: JuliaSyntax reads `@__FILE__ && main(ARGS)` as a macro call's
    arguments and fails; tree-sitter-julia accepts it. So the second parser is not redundant."""
    bad = tmp_path / "old_tutorial_tail.jl"
    bad.write_text("abspath(PROGRAM_FILE) == @__FILE__ && main(ARGS)\n")
    result = _fatou_parse(bad)
    assert "(macrocall @__FILE__ (error &&)" in result.stdout
    assert "operator is not a valid value" in result.stdout + result.stderr
    tree = _parser().parse(bad.read_bytes())
    assert not any(n.type == "ERROR" or n.is_missing for n in _nodes(tree.root_node))


def _code_only(path: Path) -> str:
    """The source with comments and string contents blanked (interpolations stay: they are code)."""
    src = bytearray(path.read_bytes())
    tree = _parser().parse(bytes(src))
    for n in _nodes(tree.root_node):
        if n.type in ("line_comment", "block_comment", "content"):
            src[n.start_byte : n.end_byte] = b" " * (n.end_byte - n.start_byte)
    return src.decode("utf-8", errors="replace")


# Removed (ADAM: Flux 0.14.22) or deprecated (implicit params, the Flux.Optimise module) API.
FORBIDDEN = {
    "ADAM(": re.compile(r"\bADAM\s*\("),
    "params(": re.compile(r"(?<![\w.])(?:Flux\.)?params\s*\("),
    "Flux.Optimise": re.compile(r"\bFlux\.Optimise\b"),
    "train! with a callback": re.compile(r"\bcb\s*="),
}


@pytest.mark.parametrize("path", JL_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_removed_or_deprecated_flux_api(path: Path):
    code = _code_only(path)
    found = [name for name, pattern in FORBIDDEN.items() if pattern.search(code)]
    assert not found, f"{path.name} uses {found}"


def test_the_deprecation_check_sees_code_but_not_comments(tmp_path: Path):
    f = tmp_path / "x.jl"
    f.write_text('# train!(loss, params(m), data, ADAM())\nx = "Flux.Optimise"\nopt = ADAM()\n')
    code = _code_only(f)
    assert FORBIDDEN["ADAM("].search(code)
    assert not FORBIDDEN["params("].search(code) and not FORBIDDEN["Flux.Optimise"].search(code)


def test_module_uses_the_explicit_api():
    code = _code_only(REPO / "julia" / "PyFluxMNIST.jl")
    for call in ("Flux.setup(", "Flux.withgradient(", "Flux.update!(", "Flux.onecold(", "Flux.crossentropy("):
        assert call in code, call
    assert re.search(r"Flux\.onecold\(.*,\s*0:9\)", code)
    assert re.findall(r"^\s*using\s+(\S+)", code, flags=re.M) == ["Flux"]
    assert "throw(ArgumentError(" in code


def test_juliapkg_json_and_project_toml_agree():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    spec = json.loads((REPO / "pyflux_mnist" / "juliapkg.json").read_text())
    assert spec["julia"] == "1.10"
    assert spec["packages"]["Flux"]["uuid"] == FLUX_UUID
    project = tomllib.loads((REPO / "Project.toml").read_text())
    assert project["deps"]["Flux"] == FLUX_UUID
    assert project["compat"]["julia"] == "1.10"
    assert project["compat"]["Flux"] == spec["packages"]["Flux"]["version"]
    assert "0.16" in spec["packages"]["Flux"]["version"]


def test_module_path_finds_the_source_in_a_checkout():
    path = julia_bridge.module_path()
    assert path.is_file() and path.read_bytes() == (REPO / "julia" / "PyFluxMNIST.jl").read_bytes()


def test_module_path_falls_back_to_top_level_julia(monkeypatch, tmp_path):
    # A checkout where the pyflux_mnist/julia symlink was not created (git on Windows without symlinks).
    monkeypatch.setattr(julia_bridge.resources, "files", lambda _pkg: tmp_path)
    assert julia_bridge.module_path() == REPO / "julia" / "PyFluxMNIST.jl"


def test_wheel_contains_juliapkg_json_and_the_julia_files(tmp_path: Path):
    pytest.importorskip("build")
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    if not (src / "README.md").exists():  # pyproject's readme; written elsewhere
        (src / "README.md").write_text("pyflux-mnist\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check"),
            *("--outdir", str(tmp_path / "dist"), str(src)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = sorted(z.namelist())
        print("\n".join(names))  # the listing, for -s
        for name in ("pyflux_mnist/juliapkg.json", "pyflux_mnist/julia/PyFluxMNIST.jl"):
            assert name in names
        # Real files with the top-level julia/ contents, not links.
        for path in (REPO / "julia").glob("*.jl"):
            assert z.read(f"pyflux_mnist/julia/{path.name}") == path.read_bytes()
        assert json.loads(z.read("pyflux_mnist/juliapkg.json"))["packages"]["Flux"]["uuid"] == FLUX_UUID
