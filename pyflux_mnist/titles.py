"""Titles that wrap between phrases and never clip, for digit grids (Pillow) and charts (matplotlib).

A title names a model with its changes, ``flux-tutorial (hidden 64, epochs 1, batch size 128, lr 0.01)``,
and is often wider than its picture. Breaking it at the last word that fits splits that parenthesis in
two (``(hidden 64, / epochs 1, ...``); a reader on a projector reads lines, so a line should end where a
phrase does: around a parenthesis, after a colon, a comma or a semicolon, before a ``·``. A phrase wider
than the line is broken at its own commas, and only then between words.
"""

from __future__ import annotations

from collections.abc import Callable

Measure = Callable[[str], float]  # the width of a line of text, in the unit of ``width``


def wrap_title(text: str, width: float, measure: Measure) -> list[str]:
    """``text`` in lines no wider than ``width`` (a single word wider than that gets a line of its own);
    ``\\n`` in ``text`` starts a new line."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_fill(_phrases(paragraph.split(), top_level=True), width, measure, level=0))
    return lines


def _phrases(words: list[str], top_level: bool) -> list[str]:
    """Words grouped into phrases. ``top_level``: break only outside parentheses (so a parenthesis stays
    whole); else at every comma, colon and semicolon."""
    phrases: list[str] = []
    current: list[str] = []
    depth = 0
    for word in words:
        if current and (word == "·" or (word.startswith("(") and depth == 0)):
            phrases.append(" ".join(current))
            current = []
        current.append(word)
        depth = max(0, depth + word.count("(") - word.count(")"))
        if (word[-1] in ",:;" or word.endswith(")")) and (depth == 0 or not top_level):
            phrases.append(" ".join(current))
            current = []
    if current:
        phrases.append(" ".join(current))
    return phrases


def _fill(pieces: list[str], width: float, measure: Measure, level: int) -> list[str]:
    """Pieces joined greedily into lines; a piece wider than a line is split finer (level 1: at its
    commas, level 2: into words)."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        trial = f"{line} {piece}".strip()
        if measure(trial) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
            line = ""
        if measure(piece) <= width or level == 2:
            line = piece
            continue
        finer = _phrases(piece.split(), top_level=False) if level == 0 else piece.split()
        sub = _fill(finer, width, measure, level + 1)
        lines.extend(sub[:-1])
        line = sub[-1]
    lines.append(line)
    return lines
