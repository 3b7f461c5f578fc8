"""The words of a text as message search stores and looks them up.

A text is normalized (NFKC, case-folded, diacritics stripped), then cut into words
(runs of letters and digits). Scripts written without spaces between words (Han,
kana, Hangul) have no word boundaries to cut at, so their runs are indexed by
character bigrams, and by single characters so that a one-character query finds
them too. A query goes through the same steps: a message matches when it holds
every token of the query, which for a CJK phrase means each of its bigrams.
"""

from __future__ import annotations

import re
import unicodedata

# A word longer than this (a URL, a pasted hash) is kept by its start: the query's
# word is cut the same way, so it still matches, and a message's tokens stay small.
MAX_TOKEN_CHARS = 40

_WORD = re.compile(r"[^\W_]+")

# Code point ranges of scripts written without spaces between words.
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x31FF),  # Bopomofo, Hangul compatibility Jamo, Katakana extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK Extensions B and after
)


def _is_cjk(char: str) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in _CJK_RANGES)


def normalized(text: str) -> str:
    """NFKC, case-folded, without diacritics: how search compares text.

    A kana's voicing marks decompose like diacritics but make another syllable
    (か, が), so marks are stripped from other scripts' letters only.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept: list[str] = []
    base_is_cjk = False
    for char in unicodedata.normalize("NFD", folded):
        if unicodedata.category(char) != "Mn":
            base_is_cjk = _is_cjk(char)
            kept.append(char)
        elif base_is_cjk:
            kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _runs(word: str) -> list[tuple[str, bool]]:
    """The word cut where it passes between CJK and other characters."""
    runs: list[tuple[str, bool]] = []
    for char in word:
        cjk = _is_cjk(char)
        if runs and runs[-1][1] == cjk:
            runs[-1] = (runs[-1][0] + char, cjk)
        else:
            runs.append((char, cjk))
    return runs


def _word_tokens(word: str, for_query: bool) -> list[str]:
    tokens: list[str] = []
    for run, cjk in _runs(word):
        if not cjk:
            tokens.append(run[:MAX_TOKEN_CHARS])
        elif len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[at : at + 2] for at in range(len(run) - 1))
            if not for_query:
                # Single characters too, so that a one-character query finds them.
                tokens.extend(run)
    return tokens


def _tokens(text: str, for_query: bool) -> list[str]:
    found: dict[str, None] = {}
    for word in _WORD.findall(normalized(text)):
        found.update(dict.fromkeys(_word_tokens(word, for_query)))
    return list(found)


def text_tokens(text: str) -> list[str]:
    """The distinct tokens a message's text is stored with."""
    return _tokens(text, for_query=False)


def query_tokens(query: str) -> list[str]:
    """The distinct tokens a message must hold to match the query."""
    return _tokens(query, for_query=True)
