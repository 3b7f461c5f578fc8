"""What counts as one emoji, and the one spelling each is stored under.

The ``emoji`` package follows Unicode's emoji data, so a flag, a skin tone or a
family joined by zero-width joiners is one emoji, and "abc", "" or two emoji are
not. An emoji may come with or without its variation selectors (U+FE0F asks for
the emoji look, U+FE0E for the text look; keyboards differ in which they send):
"❤" and "❤️" are the same reaction, so each is stored as its fully-qualified form.
"""

from __future__ import annotations

from functools import lru_cache

import emoji

from errors import BadUserInput

VARIATION_SELECTORS = str.maketrans("", "", "\ufe0e\ufe0f")
# Longer than any emoji sequence Unicode defines (a family with skin tones is 11
# code points): the library's check is not run on arbitrarily long text.
MAX_EMOJI_CHARS = 32


@lru_cache(maxsize=1)
def _fully_qualified() -> dict[str, str]:
    """Each emoji without its variation selectors -> its fully-qualified form."""
    qualified = emoji.STATUS["fully_qualified"]
    return {
        spelled.translate(VARIATION_SELECTORS): spelled
        for spelled, data in emoji.EMOJI_DATA.items()
        if data.get("status") == qualified
    }


def one_emoji(text: str) -> str:
    """The emoji as stored; BAD_USER_INPUT unless ``text`` is exactly one emoji."""
    bare = text.translate(VARIATION_SELECTORS)
    if not bare or len(text) > MAX_EMOJI_CHARS:
        raise BadUserInput("emoji must be exactly one emoji")
    canonical = _fully_qualified().get(bare)
    if canonical is None:
        if not emoji.is_emoji(text):
            raise BadUserInput("emoji must be exactly one emoji")
        canonical = text
    return canonical
