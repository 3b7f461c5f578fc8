"""Text that people see as a name: display names and room titles.

A name must read as what it is. Control characters (line breaks, escapes), line and
paragraph separators and format characters (bidi embeddings, overrides, isolates and
marks, zero-width characters, invisible operators, the byte-order mark) can hide text
or reorder it on screen, so that one name passes for another: a right-to-left override
shows "\u202egnp.exe" as "exe.png". Names refuse them; a push title, built from names
that may predate the rule, drops them. Message text keeps them: real languages need
bidi marks there, and a message is shown as a message, not as who sent it.
"""

from __future__ import annotations

import unicodedata

from errors import BadUserInput

# Unicode general categories: controls, format characters, line and paragraph
# separators, and lone surrogates (never text).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _hidden(character: str) -> bool:
    return unicodedata.category(character) in HIDDEN_CATEGORIES


def refuse_hidden_characters(text: str, field: str) -> None:
    """Raises BadUserInput naming ``field`` when the text holds a hidden character."""
    if any(_hidden(character) for character in text):
        raise BadUserInput(
            f"{field} must not contain control or format characters "
            "(line breaks, bidi or zero-width marks)"
        )


def without_hidden_characters(text: str) -> str:
    """The text with every hidden character dropped, for showing a name as it stands."""
    return "".join(character for character in text if not _hidden(character))
