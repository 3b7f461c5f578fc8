"""The short-lived cache behind viewer resolution (unit tests, no server)."""

from __future__ import annotations

import time

import pytest

from services.accounts import Recent


def test_a_kept_value_is_served_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    recent: Recent[str] = Recent(capacity=10, seconds=30)
    recent.keep("a", "alice")
    now[0] += 29
    assert recent.get("a") == "alice"
    now[0] += 2
    assert recent.get("a") is None
    assert recent.get("never kept") is None


def test_past_capacity_the_oldest_kept_goes_first() -> None:
    recent: Recent[int] = Recent(capacity=2, seconds=60)
    recent.keep("a", 1)
    recent.keep("b", 2)
    recent.keep("a", 3)  # kept again: now the newest
    recent.keep("c", 4)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (3, None, 4)
