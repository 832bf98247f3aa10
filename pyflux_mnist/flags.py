"""Yes/no values of environment variables (``PYFLUX_MNIST_OFFLINE=1``), parsed one way everywhere
(:meth:`pyflux_mnist.settings.Setting.flag` reads them).

The usual spellings are accepted in any case; anything else is refused in one line rather than silently
read as "no" (``PYFLUX_MNIST_OFFLINE=on`` used to leave the program online).
"""

from __future__ import annotations

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
