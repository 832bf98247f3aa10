"""Yes/no environment variables (``PYFLUX_MNIST_OFFLINE=1``), read one way everywhere.

The usual spellings are accepted in any case; anything else is refused in one line rather than silently
read as "no" (``PYFLUX_MNIST_OFFLINE=on`` used to leave the program online).
"""

from __future__ import annotations

import os

from .errors import PyfluxError

TRUE = ("1", "true", "yes", "y", "on", "t")
FALSE = ("0", "false", "no", "n", "off", "f", "")


def parse_flag(name: str, value: str) -> bool:
    """``value`` of the variable ``name`` as a boolean (see :data:`TRUE` and :data:`FALSE`)."""
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise PyfluxError(
        f"{name}={value!r} is neither yes nor no; use one of {', '.join(TRUE)} (or {', '.join(FALSE[:-1])})"
    )


def env_flag(name: str) -> bool:
    """The environment variable ``name`` read with :func:`parse_flag` (unset: no)."""
    return parse_flag(name, os.environ.get(name, ""))
