"""``python -m pyflux_mnist`` is the same as the ``pyflux-mnist`` command."""

from .cli import main

main()
