"""Text that people see as a name: display names and room titles.

A name must read as what it is. Control characters (line breaks, escapes), line and
paragraph separators and format characters (bidi embeddings, overrides, isolates and
marks, zero-width characters, invisible operators, the byte-order mark) can hide text
or reorder it on screen, so that one name passes for another: a right-to-left override
shows "\u202egnp.exe" as "exe.png". Names refuse them; a push title, built from names
that may predate the rule, drops them. Message text keeps them: real languages need
bidi marks there, and a message is shown as a message, not as who sent it.

Two kinds of format character are text, not tricks, in a room title: the
zero-width joiner and non-joiner, which emoji sequences (a family, a profession
with a skin tone) and scripts such as Persian and the Indic ones need, and the tag
characters of emoji subdivision flags. None of them reorders or hides other
characters, so titles and push titles keep them. A display name still refuses them:
it stands for a person, and "Al\u200dice" must not pass for "Alice".
"""

from __future__ import annotations

import unicodedata

from errors import BadUserInput

# Unicode general categories: controls, format characters, line and paragraph
# separators, and lone surrogates (never text).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# The format characters that are part of the text they sit in (see above).
ZERO_WIDTH_JOINERS = frozenset({"\u200c", "\u200d"})
EMOJI_TAGS = range(0xE0020, 0xE0080)


def _joiner(character: str) -> bool:
    return character in ZERO_WIDTH_JOINERS or ord(character) in EMOJI_TAGS


def _hidden(character: str) -> bool:
    return unicodedata.category(character) in HIDDEN_CATEGORIES and not _joiner(character)


def refuse_hidden_characters(text: str, field: str, *, joiners: bool = False) -> None:
    """Raises BadUserInput naming ``field`` when the text holds a hidden character;
    with ``joiners``, the joiners of emoji sequences and scripts are text."""
    if any(_hidden(c) or (not joiners and _joiner(c)) for c in text):
        raise BadUserInput(
            f"{field} must not contain control or format characters "
            "(line breaks, bidi or zero-width marks)"
        )


def without_hidden_characters(text: str) -> str:
    """The text with every hidden character dropped, for showing a name as it stands."""
    return "".join(character for character in text if not _hidden(character))
