"""The Julia commands and claims we hand to users, checked without Julia: every ``julia -e '…'`` in the
README and docs/ (and in the offline error line) parses with both parsers and calls ``Pkg.add`` with an
argument Pkg has a method for; the README's native-tutorial commands work on a fresh checkout; the pins and
the version the docs are checked against agree (issue 21 items 4, 5, 9, 10, 11, 12)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_julia_files import _fatou, _nodes, _parser

from pyflux_mnist.backends import julia_bridge

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _julia_e_snippets() -> list[tuple[str, str]]:
    """``(where, code)`` for every ``julia … -e '<code>'`` in the README and docs/, and the error line's."""
    found = [
        (f"{path.name}:{text[: m.start()].count(chr(10)) + 1}", m.group(1))
        for path in DOCS
        for text in [path.read_text()]
        for m in re.finditer(r"julia [^`\n]*?-e '([^']*)'", text)
    ]
    found.append(("julia_bridge.offline_pkg_add()", julia_bridge.offline_pkg_add("0.9.37")))
    return found


SNIPPETS = _julia_e_snippets()


def _vector_kind(node) -> str:
    """The element type Julia gives ``[a, b, …]`` here, from the elements' syntax: ``String``,
    ``PackageSpec``, ``NamedTuple``, or ``Any`` when they differ (Julia's ``vect`` promotes to their type
    join, and String ⊔ PackageSpec is Any)."""
    kinds = set()
    for element in node.named_children:
        if element.type == "string_literal":
            kinds.add("String")
        elif element.type == "call_expression" and element.children[0].text.decode().endswith("PackageSpec"):
            kinds.add("PackageSpec")
        elif element.type == "tuple_expression" and all(
            c.type == "named_field" for c in element.named_children
        ):
            kinds.add("NamedTuple")
        else:
            kinds.add(f"? {element.type}")
    return kinds.pop() if len(kinds) == 1 else "Any"


def _pkg_add_arguments(code: str) -> list[str]:
    """The kind of each positional argument of each ``Pkg.add(…)`` call in ``code``."""
    tree = _parser().parse(code.encode())
    out = []
    for node in _nodes(tree.root_node):
        if node.type != "call_expression" or node.children[0].text.decode() not in ("Pkg.add", "add"):
            continue
        for arg in node.children[1].named_children:
            if arg.type == "vector_expression":
                out.append(f"Vector{{{_vector_kind(arg)}}}")
            elif arg.type != "named_argument":
                out.append(arg.type)
    return out


def test_the_snippets_are_found():
    where = " ".join(w for w, _ in SNIPPETS)
    assert "flux-backend.md" in where and "README.md" in where and "offline_pkg_add" in where
    assert any("Pkg.add(" in code for w, code in SNIPPETS if w.startswith("flux-backend.md"))


@pytest.mark.parametrize(("where", "code"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_julia_snippet_parses_with_both_parsers(where: str, code: str, tmp_path: Path):
    tree = _parser().parse(code.encode())
    assert not [n for n in _nodes(tree.root_node) if n.type == "ERROR" or n.is_missing], code
    path = tmp_path / "snippet.jl"
    path.write_text(code + "\n")
    command = [_fatou(), "--no-config", "--color", "never", "parse", "--to", "sexpr", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "diagnostic" not in out and "(error" not in out, out[-2000:]


@pytest.mark.parametrize(("where", "code"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_pkg_add_gets_a_vector_pkg_has_a_method_for(where: str, code: str):
    """Issue 21 item 5: ``Pkg.add(["Flux", Pkg.PackageSpec(…)])`` is a ``Vector{Any}``: MethodError. Pkg's
    ``add`` takes one name or spec, or a ``Vector{<:AbstractString}``, ``Vector{PackageSpec}`` or
    ``Vector{<:NamedTuple}`` (Pkg release-1.10 ``src/API.jl`` l.144-148 and l.179)."""
    allowed = {
        "string_literal",
        "call_expression",
        *(f"Vector{{{k}}}" for k in ("String", "PackageSpec", "NamedTuple")),
    }
    assert set(_pkg_add_arguments(code)) <= allowed, code


def test_the_vector_check_sees_the_old_recipe():
    old = 'using Pkg; Pkg.add(["Flux", Pkg.PackageSpec(name="PythonCall", version="0.9.37")])'
    assert _pkg_add_arguments(old) == ["Vector{Any}"]
    assert _pkg_add_arguments('Pkg.add(["Flux", "Zygote"]); Pkg.add("NNlib")') == [
        "Vector{String}",
        "string_literal",
    ]
    assert _pkg_add_arguments('Pkg.add([(name="A",), (name="B", version="1")])') == ["Vector{NamedTuple}"]


def test_readme_native_tutorial_works_on_a_fresh_checkout():
    """Issue 21 item 10: ``julia --project=. julia/tutorial.jl`` alone failed on a fresh checkout: no
    ``Pkg.instantiate()`` (no Manifest.toml is committed) and no MNIST directory (tutorial.jl's ``main``
    throws a usage error without one)."""
    for path in (REPO / "README.md", REPO / "docs" / "flux-backend.md"):
        text = path.read_text()
        runs = list(re.finditer(r"julia --project=\. julia/tutorial\.jl(?P<args>[^\n`]*)", text))
        assert runs, path
        for run in runs:
            args = run.group("args").split("#")[0].split()
            assert args, f"{path.name}: the tutorial needs the MNIST directory: {run.group(0)!r}"
            before = text[: run.start()]
            block = before[before.rfind("```") :]  # the same code block, before the tutorial line
            assert "julia --project=. -e 'using Pkg; Pkg.instantiate()'" in block, path
            assert f"pyflux-mnist data download --data-dir {args[0]}" in block, path
    assert not (REPO / "Manifest.toml").exists() or "/Manifest.toml" in (REPO / ".gitignore").read_text()
    assert "/Manifest.toml" in (REPO / ".gitignore").read_text()  # instantiate writes one


def _pyproject() -> str:
    return (REPO / "pyproject.toml").read_text()


def test_juliacall_floor_is_the_version_the_docs_are_checked_against():
    """Issue 21 item 9: the floor was 0.9.34, below the juliacall whose behaviour the docs describe."""
    (floor,) = re.findall(r'"juliacall>=([\d.]+),<0\.10"', _pyproject())
    docs = (REPO / "docs" / "flux-backend.md").read_text()
    cited = set(re.findall(r"juliacall (\d+\.\d+\.\d+)", docs))
    assert cited == {floor}, (cited, floor)


def test_fatou_is_pinned_exactly_like_ruff():
    """Issue 21 item 4: a new fatou lint rule must not turn CI red with no change here."""
    assert re.search(r'"fatou==\d+\.\d+\.\d+"', _pyproject())
    assert re.search(r'"ruff==\d+\.\d+\.\d+"', _pyproject())


def test_docs_claims_fixed_against_their_sources():
    """Issue 21 item 11: Flux's Adam is not NumPy's order (Optimisers v0.4.8 rules.jl l.222); ``public``
    appears in Flux at v0.14.7; PythonCall's "Julia: " prefix is base.jl l.123."""
    docs = (REPO / "docs" / "flux-backend.md").read_text()
    twins = (REPO / "tests" / "test_julia_twins.py").read_text()
    for text in (docs, twins):
        assert (
            "in NumPy's order (Optimisers.jl's formula)" not in text
            and "Flux does Adam in NumPy's" not in text
        )
    assert "mt / (1 - βt[1]) / (sqrt(vt / (1 - βt[2])) + ϵ) * η" in docs
    assert "this is the likely\ncause, not a bug in the bridge" not in docs
    assert "lists it under `public` only)" not in docs and "from v0.14.7" in docs
    code = (REPO / "pyflux_mnist" / "backends" / "julia_bridge.py").read_text()
    for text in (docs, code):
        assert "base.jl` l.124" not in text and "base.jl l.124" not in text


def test_adam_beta_t_is_replayed_once_not_per_leaf():
    """Issue 21 item 12: ``load_optimiser_state!`` replayed Adam's rule ``t`` times for every parameter."""
    tree = _parser().parse((REPO / "julia" / "PyFluxMNIST.jl").read_bytes())
    (load,) = [
        n
        for n in _nodes(tree.root_node)
        if n.type == "function_definition" and b"load_optimiser_state!" in n.children[1].text
    ]
    calls = [n for n in _nodes(load) if n.type == "call_expression" and n.children[0].text == b"adam_beta_t"]
    assert len(calls) == 1
    parent, loops = calls[0].parent, 0
    while parent is not None and parent != load:
        loops += parent.type in ("for_statement", "while_statement")
        parent = parent.parent
    assert loops == 0
