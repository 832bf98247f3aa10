"""One run, described once: the recipe (with the user's changes), the backend, the seed, and the
checkpoint it continues.

Every entry point (the Python API, ``train``, ``tutorial``, ``reproduce``, ``bench``, ``doctor``, the web
page's ``/api/train`` and its training child) builds a :class:`Run` here, with :func:`build_run`, and passes
the object on: a recipe is resolved by name in this module only, each option's type and value is checked
once, and training receives a run that is known to be possible. ``Run.to_json`` carries it to another process.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import REFERENCE, check_name, get_backend
from .checkpoint import Checkpoint, check_resumable, load_checkpoint
from .errors import SpecError
from .recipes import DEFAULT_RECIPE, get_recipe, with_override_notes
from .spec import Recipe, check_count, whole_number

#: Seeds are non-negative integers below this (NumPy refuses negative ones with a traceback).
SEED_LIMIT = 2**63


def check_seed(seed: object) -> int:
    """A seed: an integer from 0 to 2**63 - 1."""
    seed = whole_number("seed", seed)
    if not 0 <= seed < SEED_LIMIT:
        raise SpecError(f"seed must be an integer between 0 and 2**63 - 1, got {seed!r}")
    return seed


def _widths(value: Any) -> tuple[int, ...]:
    """``hidden``: one width or a list of them (a string is neither: ``"64"`` is not split into digits)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) for w in items):
        raise SpecError(f"hidden takes widths like 32 or 512,256,128, got {value!r}")
    return tuple(int(w) for w in items)


@dataclass(frozen=True)
class Overrides:
    """What the user changes in a named recipe. Types are checked here, on construction; values by the
    recipe's own checks when :meth:`apply` builds the changed recipe (one rule, one message, anywhere)."""

    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    hidden: tuple[int, ...] | None = None  # one width per hidden layer; an int is one layer

    def __post_init__(self) -> None:
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_count(name, whole_number(name, value), low=1))
        if self.steps is not None and self.epochs is not None:
            raise SpecError("give either steps or epochs (--steps or --epochs), not both")
        if self.batch_size is not None:  # its range is the recipe's rule
            object.__setattr__(self, "batch_size", whole_number("batch_size", self.batch_size))
        if self.lr is not None:
            if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float, np.floating, np.integer)):
                raise SpecError(f"lr must be a number, got {self.lr!r}")
            object.__setattr__(self, "lr", float(self.lr))
        if self.hidden is not None:
            object.__setattr__(self, "hidden", _widths(self.hidden))

    def given(self) -> dict[str, Any]:
        """The fields set, by option name."""
        return {f: v for f in FIELDS if (v := getattr(self, f)) is not None}

    def apply(self, recipe: Recipe) -> Recipe:
        """``recipe`` with these changes (its ``notes`` then say what was changed)."""
        changes: dict[str, Any] = {}
        if self.steps is not None:
            changes.update(steps=self.steps, epochs=0)
        if self.epochs is not None:
            changes["epochs"] = self.epochs
        if self.batch_size is not None:
            changes["batch_size"] = self.batch_size
        if self.lr is not None:
            changes["optimizer"] = {"lr": self.lr}
        if self.hidden is not None:
            n_hidden = len(recipe.model.sizes) - 2
            if len(self.hidden) != n_hidden:
                raise SpecError(
                    f"recipe {recipe.name!r} has {n_hidden} hidden layer(s); got {len(self.hidden)} width(s)"
                )
            changes["model"] = {"sizes": (784, *self.hidden, 10)}
        return with_override_notes(recipe.replace(**changes)) if changes else recipe


#: The recipe fields a user may change, by option name (``--batch-size`` is ``batch_size``).
FIELDS = tuple(f.name for f in dataclasses.fields(Overrides))


def resolve_recipe(recipe: str | Recipe = DEFAULT_RECIPE, overrides: Overrides | None = None) -> Recipe:
    """A recipe by name (or as given) with ``overrides`` applied: the one place a name becomes a recipe."""
    r = get_recipe(recipe)
    return overrides.apply(r) if overrides is not None else r


@dataclass(frozen=True)
class Run:
    """One training run, checked: its recipe can be trained by its backend here, from its seed (or from
    the checkpoint ``resume``, whose recipe and seed these are). Build it with :func:`build_run`."""

    recipe: Recipe
    backend: str = REFERENCE
    seed: int = 0
    resume: Checkpoint | None = None

    def to_json(self) -> str:
        """The run for another process (the web page's training child): recipe, backend and seed."""
        if self.resume is not None:
            raise SpecError("a resumed run cannot be sent to another process")
        return json.dumps({"recipe": self.recipe.to_dict(), "backend": self.backend, "seed": self.seed})

    @classmethod
    def from_json(cls, text: str) -> Run:
        """The run :meth:`to_json` wrote. Its parts are checked as a file's are (the recipe's fields, a
        known backend name, the seed's range); whether the backend can run it was checked where it was built.
        """
        d = json.loads(text)
        if not isinstance(d, dict) or set(d) != {"recipe", "backend", "seed"}:
            raise SpecError("a run is a JSON object with recipe, backend and seed")
        backend = d["backend"]
        if not isinstance(backend, str):
            raise SpecError(f"backend must be a name, got {backend!r}")
        return cls(Recipe.from_dict(d["recipe"]), check_name(backend), check_seed(d["seed"]))


def build_run(
    recipe: str | Recipe = DEFAULT_RECIPE,
    backend: str | None = None,
    seed: object = 0,
    overrides: Overrides | None = None,
    resume: str | os.PathLike[str] | Checkpoint | None = None,
) -> Run:
    """The run asked for, checked before any data is loaded: the recipe with its overrides, the seed, the
    backend (known, able to run this recipe, available here), and a checkpoint's fit.

    ``backend`` ``None``: the reference backend, or the checkpoint's when resuming. With ``resume`` the
    recipe and seed are the checkpoint's, so no overrides may be given.
    """
    if not isinstance(backend, (str, type(None))):
        raise SpecError(f"backend must be a name, got {backend!r}")
    ck = load_checkpoint(resume) if isinstance(resume, (str, os.PathLike)) else resume
    if ck is not None:
        if overrides is not None and overrides.given():
            raise SpecError("a resumed run takes its recipe from the checkpoint; give no overrides")
        recipe, seed, backend = ck.recipe, ck.seed, backend or ck.backend
    r = resolve_recipe(recipe, overrides)
    run = Run(r, backend or REFERENCE, check_seed(seed), ck)
    get_backend(run.backend, r)  # unknown, unable to run this recipe, or unavailable here
    if ck is not None:
        check_resumable(ck, run.backend)
    return run


__all__ = ["FIELDS", "Overrides", "Run", "build_run", "check_seed", "resolve_recipe"]
