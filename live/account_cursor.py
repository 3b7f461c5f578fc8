"""Where an account's stream stands: the cursor a sync token carries.

Every room event of the account with a position at or below ``upto`` was given,
and so were the positions in ``also`` (given live, above ``upto``, before the
stream could tell that nothing below them was missing). ``also`` holds at most
``MAX_ALSO`` positions, so a token stays small whatever the number of rooms
(``services.sync_tokens`` signs and encodes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from errors import BadUserInput

# Positions given above ``upto`` a token may carry: with ids, times and the
# signature, 40 of up to six hex digits above ``upto`` stay under a token's 512 characters
# (``services.sync_tokens.MAX_TOKEN_CHARS``).
# The account stream catches up (moving ``upto``) once it holds ``ALSO_SOFT_LIMIT``,
# so it comes near the hard limit only while a stalled write holds the watermark.
MAX_ALSO = 40
ALSO_SOFT_LIMIT = 24


class SyncTokenExpired(BadUserInput):
    """The token is older than the server keeps events for: start over with sync."""

    @property
    def extensions(self) -> dict[str, object]:
        return {"reason": "SYNC_TOKEN_EXPIRED"}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Which room events of an account were given: up to ``upto``, and ``also``."""

    upto: int
    at: float  # when upto was read, seconds since the epoch
    also: frozenset[int] = field(default_factory=frozenset)

    def given(self, pos: int) -> bool:
        return pos <= self.upto or pos in self.also
