"""Exponential backoff with jitter, capped: how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2 ** 60 times any initial delay is past every cap; a larger exponent would only
# overflow the float.
_MAX_EXPONENT = 60


@dataclass(frozen=True, slots=True)
class Backoff:
    """Attempt n (from 0) waits between half and all of min(cap, initial * factor ** n).

    Half of the delay is random so that clients cut off together (a server restart)
    do not come back in lockstep; the other half keeps the wait growing.
    """

    initial_seconds: float = 0.2
    factor: float = 2.0
    cap_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        ceiling = min(
            self.cap_seconds, self.initial_seconds * self.factor ** min(attempt, _MAX_EXPONENT)
        )
        return random.uniform(ceiling / 2, ceiling)
