"""Time windows of a message's words: what bounds the messages a search reads.

FerretDB 1.24 filters in PostgreSQL on top-level equalities only, then hands every
matching document over to sort and limit them in its own process, a few thousand a
second on a loaded machine: a search for a common word would wait for every message
holding it. So each message also stores each of its words with the windows of its
send time, at a few sizes (``MessageDoc.search_keys``, "word 24:1234" for the
2^24-millisecond window number 1234), and a search on such a server asks the window
of its starting time first, then the wider ones, then all time, until its page is
full (``services.message_search``). A common word fills its page from the last few
hours; a rare one takes a scan per size, each handing over only what it matches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.search_tokens import text_tokens

# Window sizes, as powers of two of milliseconds: about 4.7 hours and 24.9 days.
WINDOW_BITS = (24, 31)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _millis(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MILLISECOND


def window_key(token: str, bits: int, moment: datetime) -> str:
    """The key of ``token`` in the window of size 2^bits ms that holds ``moment``
    (tokens hold no spaces, so a key is never a token)."""
    return f"{token} {bits}:{_millis(moment) >> bits}"


def window_start(bits: int, moment: datetime) -> datetime:
    """Where the window of size 2^bits ms that holds ``moment`` begins."""
    return _EPOCH + ((_millis(moment) >> bits) << bits) * _MILLISECOND


def window_keys(tokens: list[str], sent_at: datetime) -> list[str]:
    """The keys a message sent at ``sent_at`` with these tokens is stored with."""
    return [window_key(token, bits, sent_at) for token in tokens for bits in WINDOW_BITS]


def search_fields(text: str, sent_at: datetime) -> dict[str, list[str]]:
    """What a message with this text, sent at ``sent_at``, stores for search."""
    tokens = text_tokens(text)
    return {"search_tokens": tokens, "search_keys": window_keys(tokens, sent_at)}
