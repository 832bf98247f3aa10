"""The JSON-lines channel a child process answers its parent on (bench's workers, the web page's training
run): one JSON object a line on the real stdout, while whatever the libraries print goes to stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any


def protocol_stream() -> IO[str]:
    """Keep the real stdout for the answers; send fd 1 (prints from any library, Julia's too) and Python's
    ``sys.stdout`` to stderr, so nothing else can land in the middle of an answer."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def send(out: IO[str], **message: Any) -> None:
    """One answer: a JSON object on one line, flushed at once (the parent is waiting for it)."""
    out.write(json.dumps(message) + "\n")
    out.flush()
