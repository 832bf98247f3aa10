"""The bridge's pure-Python parts, without Julia: environment before import, argument layout, error
translation, and the startup sequence against a stand-in ``juliacall`` module."""

from __future__ import annotations

import shutil
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from pyflux_mnist.backends import julia_bridge as jb
from pyflux_mnist.errors import BackendUnavailable, PyfluxError


@pytest.fixture
def fresh_bridge(monkeypatch):
    """A bridge that has not started Julia in this process, with no juliacall settings in the environment."""
    monkeypatch.setattr(jb, "_julia", None)
    monkeypatch.setattr(jb, "_failure", None)
    for key in list(__import__("os").environ):
        if key.startswith("PYTHON_JULIACALL_") or key.startswith("PYFLUX_MNIST_JULIA") or key == jb.BLAS_ENV:
            monkeypatch.delenv(key)
    before = {name: sys.modules[name] for name in ("juliacall", "torch") if name in sys.modules}
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    yield jb
    # monkeypatch.delitem records nothing for a key that was absent, so a stand-in juliacall imported by the
    # test would outlive it and make Flux look available to every later test in the session.
    for name in ("juliacall", "torch"):
        sys.modules.pop(name, None)
    sys.modules.update(before)


FAKE_JULIACALL = """
import os

ENV_AT_IMPORT = {k: v for k, v in os.environ.items() if k.startswith("PYTHON_JULIACALL_")}
FAIL = os.environ.get("FAKE_JULIACALL_FAIL")
if FAIL:
    raise Exception(FAIL)
INCLUDED = []


class JuliaError(Exception):
    @property
    def exception(self):
        return self.args[0]

    def __str__(self):  # like juliacall's: showerror, then the backtrace
        return f"{self.args[0]}\\nStacktrace:\\n [1] top-level scope"


class Module:
    def seval(self, code):
        if "get_num_threads" in code and os.environ.get("FAKE_JULIACALL_BLAS_FAIL"):
            raise JuliaError("UndefVarError: `get_num_threads` not defined", "backtrace")
        return 1 if "get_num_threads" in code else (lambda *args: None)

    def include(self, path):
        INCLUDED.append(path)
        return PyFluxMNIST()


class PyFluxMNIST:
    def versions(self):
        return ("1.11.5", "0.16.11", "0.4.8", 1)

    def boom(self):
        raise JuliaError("ArgumentError: expected X with 784 rows", "backtrace")

    def wrong_arity(self, *args):
        # What PythonCall raises for a MethodError on the called function itself: "Julia: " + showerror.
        raise TypeError("Julia: MethodError: no method matching train_steps!(::Int64)\\n\\nClosest: ...")

    def python_type_error(self):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


def newmodule(name):
    return Module()


class Main:
    @staticmethod
    def sprint(f, e):
        return f"{e}\\nStacktrace:\\n [1] top-level scope"

    @staticmethod
    def seval(code):
        assert code == "string(pkgversion(PythonCall))", code
        return "0.9.37"

    showerror = None
"""


@pytest.fixture
def fake_juliacall(fresh_bridge, tmp_path, monkeypatch):
    (tmp_path / "juliacall.py").write_text(textwrap.dedent(FAKE_JULIACALL))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(jb, "_pin_blas", lambda julia: None)
    return tmp_path


# --- environment ---------------------------------------------------------------------------------------


def test_default_is_one_thread_without_signal_handling():
    env: dict[str, str] = {}
    jb.configure_environment(env)
    assert env == {"PYTHON_JULIACALL_THREADS": "1"}


@pytest.mark.parametrize("threads", [4, "auto"])
def test_more_threads_turn_on_julia_signal_handling(threads):
    env: dict[str, str] = {}
    jb.configure_environment(env, threads=threads)
    assert env == {"PYTHON_JULIACALL_THREADS": str(threads), "PYTHON_JULIACALL_HANDLE_SIGNALS": "yes"}


def test_users_settings_win():
    env = {"PYTHON_JULIACALL_THREADS": "2", "PYTHON_JULIACALL_HANDLE_SIGNALS": "no", jb.THREADS_ENV: "8"}
    jb.configure_environment(env)
    assert env["PYTHON_JULIACALL_THREADS"] == "2" and env["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "no"
    env = {jb.THREADS_ENV: "3"}
    jb.configure_environment(env)
    assert env["PYTHON_JULIACALL_THREADS"] == "3"


def test_environment_is_set_before_juliacall_is_imported(fake_juliacall):
    julia = jb.load()
    import juliacall  # the stand-in, as the bridge imported it

    assert juliacall.ENV_AT_IMPORT == {"PYTHON_JULIACALL_THREADS": "1"}
    assert [str(jb.module_path())] == juliacall.INCLUDED  # the path, passed as an argument
    assert jb.load() is julia and len(juliacall.INCLUDED) == 1  # once per process
    assert julia.versions() == {
        "julia": "1.11.5",
        "flux": "0.16.11",
        "optimisers": "0.4.8",
        "pythoncall": "0.9.37",
        "threads": "1",
    }


def test_warns_when_torch_came_first(fake_juliacall, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", type(sys)("torch"))
    with pytest.warns(UserWarning, match="torch was imported before juliacall"):
        jb.load()


def test_no_warning_in_the_right_order(fake_juliacall):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jb.load()


# --- availability and errors ---------------------------------------------------------------------------


def test_unavailable_without_juliacall(fresh_bridge, monkeypatch):
    real = jb.importlib.util.find_spec
    monkeypatch.setattr(
        jb.importlib.util, "find_spec", lambda name, *a: None if name == "juliacall" else real(name, *a)
    )
    from pyflux_mnist.backends import get_backend

    with pytest.raises(BackendUnavailable) as e:
        get_backend("flux")
    assert str(e.value) == jb.INSTALL_HINT
    assert "pip install 'pyflux-mnist[julia]'" in str(e.value)
    assert "juliacall" not in sys.modules


def test_switched_off_by_environment(fresh_bridge, monkeypatch):
    monkeypatch.setenv(jb.JULIA_SWITCH, "0")
    assert jb.unavailable_reason() == jb.SWITCHED_OFF
    with pytest.raises(BackendUnavailable, match="PYFLUX_MNIST_JULIA=0"):
        jb.load()


def test_availability_check_never_imports_juliacall(fake_juliacall):
    assert jb.unavailable_reason() is None
    status = jb.julia_status()
    assert status["available"] and not status["started"] and status["julia"] is None
    assert "juliacall" not in sys.modules


def test_julia_status_starts_julia_only_when_asked(fake_juliacall):
    status = jb.julia_status(start=True)
    assert status["available"] and status["started"]
    assert (status["julia"], status["flux"]) == ("1.11.5", "0.16.11")


def test_what_really_ran_is_reported(fake_juliacall):
    """Issue 21 item 2: the Julia the bridge used, Flux, Optimisers, PythonCall and Julia's threads, as
    Julia reports them (the stand-in's numbers here), in info's line and in doctor's backend row."""
    from pyflux_mnist.backends.flux_backend import FluxBackend

    status = jb.julia_status(start=True)
    found = {k: status[k] for k in ("julia", "flux", "optimisers", "pythoncall", "julia_threads")}
    assert found == {
        "julia": "1.11.5",
        "flux": "0.16.11",
        "optimisers": "0.4.8",
        "pythoncall": "0.9.37",
        "julia_threads": "1",
    }
    flux = FluxBackend()
    assert flux.version().startswith("Flux 0.16.11, Optimisers 0.4.8, Julia 1.11.5, PythonCall 0.9.37")
    line = flux.details_line() or ""
    for part in ("julia 1.11.5", "flux 0.16.11", "optimisers 0.4.8", "pythoncall 0.9.37", "1 thread(s)"):
        assert part in line, line


def test_a_julia_error_while_reporting_is_a_reason_not_a_crash(fake_juliacall, monkeypatch):
    """Issue 21 item 6: a JuliaError reading BLAS threads escaped julia_status (it caught only PyfluxError)
    and crashed doctor."""
    monkeypatch.setenv("FAKE_JULIACALL_BLAS_FAIL", "1")
    status = jb.julia_status(start=True)
    assert not status["available"]
    error = "JuliaError: UndefVarError: `get_num_threads` not defined"
    assert status["reason"] == f"Julia started but failed: {error}"


def test_version_raises_when_julia_cannot_be_set_up(fake_juliacall, monkeypatch):
    """Issue 21 item 6: version() returned "" there, so doctor's backend row said ok with no version."""
    from pyflux_mnist.backends.flux_backend import FluxBackend
    from pyflux_mnist.doctor import check_backends

    monkeypatch.setenv("FAKE_JULIACALL_FAIL", "Could not download Julia")
    rows, usable = check_backends(["flux"])  # not named, yet juliacall is there: its failure is a FAIL
    assert [(r.item, r.status) for r in rows] == [("flux", "FAIL")] and not usable
    assert "Could not download Julia" in rows[0].detail
    with pytest.raises(BackendUnavailable, match="could not set up Julia and Flux"):
        FluxBackend().version()


def test_load_library_goes_through_the_bridge(fake_juliacall, monkeypatch):
    """Issue 21 item 7: bench's load_library imported juliacall itself, so a set-up failure came out raw
    (``URLError: <urlopen error ...>``), with no hint, and was not remembered."""
    from pyflux_mnist.backends.flux_backend import FluxBackend

    monkeypatch.setenv("FAKE_JULIACALL_FAIL", "<urlopen error [Errno -2] Name or service not known>")
    with pytest.raises(BackendUnavailable) as e:
        FluxBackend().load_library()
    assert str(e.value).startswith("juliacall could not set up Julia and Flux (<urlopen error [Errno -2]")
    assert "PYTHON_JULIACALL_PROJECT" in str(e.value)
    assert jb.unavailable_reason() == str(e.value)  # remembered


def test_load_library_times_julia_and_flux(fake_juliacall):
    from pyflux_mnist.backends.flux_backend import FluxBackend

    timings = FluxBackend().load_library()
    assert set(timings) == {"julia_start", "using_flux", "import"}
    assert timings["import"] == pytest.approx(timings["julia_start"] + timings["using_flux"])
    assert "juliacall" in sys.modules


def test_info_does_not_call_flux_available_before_julia_ran(fake_juliacall):
    """Issue 21 item 6: with juliacall installed, info said ``flux available`` though Julia may be missing
    or offline; it starts nothing, so it can only say "not checked"."""
    from click.testing import CliRunner

    from pyflux_mnist.backends import backend_availability
    from pyflux_mnist.cli import cli

    assert backend_availability()["flux"].startswith("not checked: juliacall is installed")
    result = CliRunner().invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("backend      flux")]
    assert "not checked" in line and "available" not in line.replace("unavailable", "")
    assert "juliacall" not in sys.modules  # info started nothing
    jb.load()
    assert backend_availability()["flux"] == "available"  # once Julia runs, it is known


def test_conftest_requires_julia_for_any_yes(tmp_path):
    """Issue 21 item 12: conftest tested ``== "1"`` while the package reads yes/true/on as yes too."""
    import os
    import subprocess

    record = tmp_path / "juliacall_imported"
    fake = f"open({str(record)!r}, 'w').write('yes')\n" + textwrap.dedent(FAKE_JULIACALL)
    (tmp_path / "juliacall.py").write_text(fake)
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    tests = Path(__file__).resolve().parent
    for name in ("conftest.py", "subset.py"):
        shutil.copy(tests / name, tmp_path / name)
    path = os.pathsep.join([str(tmp_path), *sys.path])
    env = {**os.environ, "PYFLUX_MNIST_JULIA": "yes", "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_nothing.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert record.exists()  # Julia (the stand-in) was started before collection
    assert jb.required({"PYFLUX_MNIST_JULIA": "yes"}) and not jb.required({"PYFLUX_MNIST_JULIA": "0"})
    assert not jb.required({})


def test_setup_failure_is_one_line_naming_the_offline_settings(fake_juliacall, monkeypatch):
    monkeypatch.setenv("FAKE_JULIACALL_FAIL", "Could not download Julia\nlong details")
    with pytest.raises(BackendUnavailable) as e:
        jb.load()
    msg = str(e.value)
    assert "\n" not in msg and "Could not download Julia" in msg
    # The recipe that works on a fresh venv (defect 3): juliacall's EXE + PROJECT pair, not juliapkg offline.
    for needle in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIACALL_PROJECT", "together", "Flux"):
        assert needle in msg
    assert "PYTHON_JULIAPKG_OFFLINE" not in msg
    # It stands on its own (issue 21 item 8): the commands, not a docs/ file a pip user does not have.
    assert "docs/" not in msg and f"julia --project=DIR -e '{jb.offline_pkg_add()}'" in msg
    assert jb.unavailable_reason() == msg  # remembered: juliacall cannot be started twice
    assert jb.julia_status()["reason"] == msg


class FakeJuliaError(Exception):
    """Like juliacall.JuliaError: args (exception, backtrace), str = showerror with the backtrace."""

    @property
    def exception(self):
        return self.args[0]

    def __str__(self):
        return f"{self.args[0]}\nStacktrace:\n [1] train_steps!(...)\n [2] top-level scope"


def test_julia_error_becomes_its_first_line():
    err = jb.translate_julia_error(FakeJuliaError("ArgumentError: batch indices must be 0-based", None))
    assert isinstance(err, jb.JuliaRuntimeError) and isinstance(err, PyfluxError)
    assert str(err) == "Julia: ArgumentError: batch indices must be 0-based"


def test_julia_error_uses_showerror_without_backtrace_when_given():
    err = jb.translate_julia_error(FakeJuliaError("E", None), showerror=lambda e: f"\nDomainError: {e}\nmore")
    assert str(err) == "Julia: DomainError: E"
    broken = jb.translate_julia_error(FakeJuliaError("E", None), showerror=lambda e: 1 / 0)
    assert str(broken) == "Julia: E"


def test_call_translates_julia_errors_and_keeps_the_trace_as_cause(fake_juliacall):
    julia = jb.load()
    with pytest.raises(jb.JuliaRuntimeError) as e:
        julia.call("boom")
    assert str(e.value) == "Julia: ArgumentError: expected X with 784 rows"
    assert type(e.value.__cause__).__name__ == "JuliaError"  # printed only by --verbose


def test_conftest_starts_julia_before_torch_when_julia_is_required(tmp_path):
    """Defect 7: with PYFLUX_MNIST_JULIA=1 pytest imports juliacall before anything imports torch."""
    import os
    import subprocess

    pytest.importorskip("torch")
    record = tmp_path / "torch_loaded_at_juliacall_import"
    fake = textwrap.dedent(FAKE_JULIACALL)
    fake = f"import sys\nopen({str(record)!r}, 'w').write(str('torch' in sys.modules))\n" + fake
    (tmp_path / "juliacall.py").write_text(fake)
    env = {**os.environ, "PYFLUX_MNIST_JULIA": "1", "PYTHONPATH": str(tmp_path)}
    tests = Path(__file__).resolve().parent
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider", "test_parity_torch.py"]
    subprocess.run(
        [sys.executable, "-m", "pytest", *collect],
        cwd=tests,
        env=env,
        capture_output=True,
        check=True,
    )
    assert record.read_text() == "False"  # juliacall came first, although that file imports torch


def test_a_method_error_on_the_called_function_is_one_line_too(fake_juliacall):
    """Defect 8: PythonCall raises TypeError("Julia: MethodError: ...") there, not JuliaError."""
    julia = jb.load()
    with pytest.raises(jb.JuliaRuntimeError) as e:
        julia.call("wrong_arity", 1)
    assert str(e.value) == "Julia: MethodError: no method matching train_steps!(::Int64)"
    assert isinstance(e.value.__cause__, TypeError)
    with pytest.raises(TypeError, match="unsupported operand"):  # Python's own TypeError is not Julia's
        julia.call("python_type_error")


def test_the_hint_names_the_pythoncall_version_juliacall_pins(tmp_path, monkeypatch):
    pkg = tmp_path / "juliacall"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('a test must never import this')\n")
    (pkg / "juliapkg.json").write_text('{"packages": {"PythonCall": {"uuid": "x", "version": "=0.9.37"}}}')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    assert jb.pinned_pythoncall() == "0.9.37"
    hint = jb.setup_failure_message(RuntimeError("no julia"))
    assert 'Pkg.PackageSpec(name="PythonCall", version="0.9.37")' in hint
    assert "juliacall" not in sys.modules


def test_cli_prints_one_line_and_exits_1(monkeypatch):
    import click
    from click.testing import CliRunner

    from pyflux_mnist.cli import cli

    @cli.command("raise-julia-error")
    def _raise():
        raise jb.translate_julia_error(FakeJuliaError("ArgumentError: bad", None)) from FakeJuliaError(
            "ArgumentError: bad", None
        )

    try:
        result = CliRunner().invoke(cli, ["raise-julia-error"])
        assert result.exit_code == 1
        assert result.output.strip() == "Error: Julia: ArgumentError: bad"
        verbose = CliRunner().invoke(cli, ["--verbose", "raise-julia-error"])
        assert verbose.exit_code == 1 and "Stacktrace" in verbose.output
    finally:
        cli.commands.pop("raise-julia-error", None)
    assert isinstance(cli, click.Group)


# --- arrays --------------------------------------------------------------------------------------------


def test_X_transpose_goes_to_julia_without_a_copy():
    rows = np.random.default_rng(0).random((50, 784), dtype=np.float32)  # C (N, 784)
    X = rows.T
    passed = jb.julia_matrix(X, rows=784)
    assert passed is X
    assert passed.shape == (784, 50) and passed.dtype == np.float32 and passed.flags.f_contiguous
    assert np.shares_memory(passed, rows)


@pytest.mark.parametrize("X", [np.zeros((784, 5), np.float32), np.zeros((5, 784), np.float64).T])
def test_other_layouts_are_copied_once_to_fortran_float32(X):
    passed = jb.julia_matrix(X)
    assert passed.flags.f_contiguous and passed.dtype == np.float32 and not np.shares_memory(passed, X)


def test_wrong_shapes_are_refused():
    with pytest.raises(PyfluxError, match=r"\(10, N\)"):
        jb.julia_matrix(np.zeros((784, 3), np.float32), rows=10, what="Y")
    with pytest.raises(PyfluxError, match="2-D"):
        jb.julia_matrix(np.zeros(784, np.float32))


def test_params_are_float32_c_arrays():
    params = [np.ones((32, 784)), np.zeros(32, np.float32), np.asfortranarray(np.ones((10, 32), np.float32))]
    out = jb.julia_params(params)
    assert isinstance(out, tuple)
    assert all(p.dtype == np.float32 and p.flags.c_contiguous for p in out)
    assert out[1] is params[1]


def test_batches_are_flattened_with_sizes():
    idx, sizes = jb.encode_batches([np.array([3, 1, 2]), None, np.array([0], np.int32)], 4)
    assert idx.dtype == np.int64 and sizes.dtype == np.int64
    assert idx.tolist() == [3, 1, 2, 0] and sizes.tolist() == [3, -1, 1]
    idx, sizes = jb.encode_batches([None, None], 4)
    assert idx.size == 0 and sizes.tolist() == [-1, -1]


@pytest.mark.parametrize("bad", [np.array([4]), np.array([-1]), np.array([], np.int64), np.array([0.5])])
def test_bad_batches_are_refused(bad):
    with pytest.raises(PyfluxError):
        jb.encode_batches([bad], 4)


def test_results_are_copied_out_of_julia_memory():
    julia_memory = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    out = jb.to_numpy(julia_memory)
    assert not np.shares_memory(out, julia_memory) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, julia_memory)
