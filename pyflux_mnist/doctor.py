"""``pyflux-mnist doctor``: prove an installation in seconds.

Three kinds of check, each a row of one report:

* **data**: the four MNIST files are found and match their SHA-256;
* **backend**: every backend in the registry, available or not (and why not), its versions and threads;
* **parity**: every available backend trains the flux-tutorial network for :data:`STEPS` full-batch Adam
  steps on the first :data:`N_TRAIN` training digits, from the same initial weights as NumPy (the
  reference). The loss curves must agree to :data:`LOSS_RTOL` (max relative difference) and the predicted
  digits on the first :data:`N_TEST` test images must be NumPy's, except where NumPy's two most likely
  digits are closer than :data:`TIE_GAP` (rounding may pick either there).

On a machine with Julia this is the Flux parity proof. Backends come from the registry
(:mod:`pyflux_mnist.backends`), so a new one is checked without touching this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .backends import REFERENCE, backend_names, backend_status, check_name, get_backend
from .backends.base import Backend
from .errors import PyfluxError, unexpected_line
from .init import run_start
from .mnist import MnistData, data_info, load_mnist
from .prepare import Prepared, prepare
from .recipes import FLUX_TUTORIAL
from .spec import Recipe

STEPS = 10
N_TRAIN = 1000
N_TEST = 1000
LOSS_RTOL = 1e-4
TIE_GAP = 1e-4
SEED = 0


@dataclass
class Row:
    """One line of the report. ``status``: ``ok``, ``FAIL``, ``skip`` (not available here) or ``ref``."""

    check: str  # "data", "backend" or "parity"
    item: str  # a file name or a backend name
    status: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


@dataclass
class Report:
    rows: list[Row]

    @property
    def ok(self) -> bool:
        return not any(r.failed for r in self.rows)

    def failures(self) -> list[str]:
        """One line per failed check."""
        return [f"{r.check} {r.item}: {r.detail}" for r in self.rows if r.failed]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failures": self.failures(), "rows": [asdict(r) for r in self.rows]}


# --- data ------------------------------------------------------------------------------------------------


def check_data(data_dir: str | None) -> tuple[list[Row], MnistData | None]:
    """A row per intact MNIST file and one for any missing or damaged; the data when all four are intact."""
    info = data_info(data_dir, offline=True)
    rows = [
        Row("data", name, "ok", f"{f['path']} (SHA-256 ok)", {"sha256": f["sha256"]})
        for name, f in info["files"].items()
        if f.get("checksum_ok")
    ]
    bad = [name for name, f in info["files"].items() if not f.get("checksum_ok")]
    if bad:
        detail = (
            f"{', '.join(bad)} missing or not MNIST in {info['directory']} (from {info['from']}); "
            "run `pyflux-mnist data download` or pass --data-dir"
        )
        rows.append(Row("data", "MNIST", "FAIL", detail, {"bad": bad}))
        return rows, None
    return rows, load_mnist(data_dir, offline=True, progress=False)


# --- backends --------------------------------------------------------------------------------------------


def check_backends(names: Iterable[str], named: bool = False) -> tuple[list[Row], dict[str, Backend]]:
    """A row per backend: available or why not, versions, threads. Returns the usable ones too.

    ``named``: the user asked for these backends by name, so one that cannot be checked here is a failure,
    not a skip (``doctor --backend flux`` without Julia must not pass)."""
    status = backend_status()
    rows: list[Row] = []
    usable: dict[str, Backend] = {}
    for name in names:
        reason = status.get(name, f"unknown backend {name!r}")
        if reason is not None:
            detail = f"not available: {reason}"
            rows.append(Row("backend", name, "FAIL" if named else "skip", detail, {"available": False}))
            continue
        try:
            backend = get_backend(name)
            version, threads = backend.version(), backend.threads()
        except PyfluxError as e:  # e.g. juliacall is installed but Julia cannot be set up
            rows.append(Row("backend", name, "FAIL", str(e), {"available": False}))
            continue
        except Exception as e:  # a runtime that crashes while reporting is a finding, not a reason to stop
            rows.append(Row("backend", name, "FAIL", unexpected_line(e), {"available": False}))
            continue
        usable[name] = backend
        shown = ", ".join(f"{k} threads {v}" for k, v in threads.items())
        values = {"available": True, "version": version, "threads": threads}
        rows.append(Row("backend", name, "ok", f"{version}; {shown}" if shown else version, values))
    return rows, usable


# --- parity ----------------------------------------------------------------------------------------------


@dataclass
class First:
    """The first ``n_train`` training and ``n_test`` test digits, shaped like :class:`MnistData`."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @classmethod
    def of(cls, mnist: MnistData, n_train: int, n_test: int) -> First:
        return cls(
            mnist.train_images[:n_train],
            mnist.train_labels[:n_train],
            mnist.test_images[:n_test],
            mnist.test_labels[:n_test],
        )


@dataclass
class Run:
    losses: np.ndarray  # (STEPS,) the loss before each update
    predictions: np.ndarray  # (N_TEST,) digits
    probabilities: np.ndarray  # (10, N_TEST)


def run_backend(
    backend: Backend, recipe: Recipe, params: list[np.ndarray], data: Prepared, steps: int
) -> Run:
    """``steps`` full-batch steps from ``params``, then the trained network's digits on the test images."""
    trainer = backend.trainer(recipe, params, data.X_train, data.Y_train)
    losses = np.asarray(trainer.run([None] * steps), dtype=np.float64)
    trained = trainer.parameters()
    P = backend.probabilities(recipe.model, trained, data.X_test)  # (10, N_TEST)
    return Run(losses, np.asarray(backend.predict(recipe.model, trained, data.X_test)), P)


def compare(name: str, run: Run, ref: Run) -> Row:
    """The parity row for ``run`` against the reference run."""
    if run.losses.shape != ref.losses.shape or not np.isfinite(run.losses).all():
        curve = np.array2string(run.losses, precision=4)
        detail = f"loss curve {curve} is not {ref.losses.size} finite values"
        return Row("parity", name, "FAIL", detail)
    rel = float(np.max(np.abs(run.losses - ref.losses) / np.abs(ref.losses)))
    top2 = np.sort(ref.probabilities, axis=0)[-2:]
    near_tie = (top2[1] - top2[0]) < TIE_GAP
    differ = run.predictions != ref.predictions
    wrong = int((differ & ~near_tie).sum())
    n = ref.predictions.size
    values = {
        "max_rel_loss_diff": rel,
        "loss_rtol": LOSS_RTOL,
        "predictions_agree": int(n - differ.sum()),
        "predictions_disagree_away_from_ties": wrong,
        "n_test": n,
        "first_loss": float(run.losses[0]),
        "last_loss": float(run.losses[-1]),
    }
    problems = []
    if not rel < LOSS_RTOL:
        problems.append(f"loss curves differ by {rel:.2e} (max relative), limit {LOSS_RTOL:.0e}")
    if wrong:
        problems.append(f"{wrong} of {n} test predictions differ from {REFERENCE}'s (not near-ties)")
    if problems:
        return Row("parity", name, "FAIL", "; ".join(problems), values)
    ties = f" ({int(differ.sum())} near-ties differ)" if differ.any() else ""
    detail = (
        f"max rel loss diff {rel:.1e} < {LOSS_RTOL:.0e}; predictions {n - int(differ.sum())}/{n} agree{ties}"
    )
    return Row("parity", name, "ok", detail, values)


def check_parity(mnist: MnistData, backends: dict[str, Backend], skipped: Sequence[str]) -> list[Row]:
    """Each usable backend against NumPy: same recipe, weights, data and number of steps."""
    recipe = FLUX_TUTORIAL
    data = prepare(First.of(mnist, N_TRAIN, N_TEST), recipe.data)
    params = run_start(recipe, data.X_train.shape[1], SEED).params
    reference = backends.get(REFERENCE) or get_backend(REFERENCE)
    ref = run_backend(reference, recipe, params, data, STEPS)
    what = f"{STEPS} full-batch Adam steps on {N_TRAIN} digits"
    rows = [
        Row(
            "parity",
            REFERENCE,
            "ref",
            f"reference: {what}, loss {ref.losses[0]:.4f} -> {ref.losses[-1]:.4f}",
            {"losses": ref.losses.tolist()},
        )
    ]
    for name, backend in backends.items():
        if backend is reference:
            continue
        try:
            run = run_backend(backend, recipe, params, data, STEPS)
        except Exception as e:  # a backend that crashes is a finding to report, not a reason to stop
            rows.append(Row("parity", name, "FAIL", f"could not train: {unexpected_line(e)}"))
            continue
        rows.append(compare(name, run, ref))
    rows += [Row("parity", name, "skip", "not tried: backend not available (see above)") for name in skipped]
    return rows


def doctor(data_dir: str | None = None, backends: Sequence[str] | None = None) -> Report:
    """Run every check; ``backends`` defaults to every registered backend."""
    for name in backends or ():
        check_name(name)  # a SpecError, with "did you mean", for a name the registry does not know
    # Always in the registry's order (Flux before PyTorch: juliacall must be imported before torch).
    names = [n for n in backend_names() if backends is None or n in backends]
    rows, mnist = check_data(data_dir)
    backend_rows, usable = check_backends(names, named=backends is not None)
    rows += backend_rows
    skipped = [r.item for r in backend_rows if r.status != "ok"]
    if mnist is None:
        rows += [Row("parity", name, "skip", "not tried: MNIST is not available") for name in usable]
    else:
        rows += check_parity(mnist, usable, skipped)
    return Report(rows)
