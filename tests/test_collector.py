"""The server process's collector pace (app.collector)."""

from __future__ import annotations

import gc

from app.collector import settle_collector


def test_settled_collector_freezes_start_up_and_spaces_full_passes() -> None:
    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 0
        young, middle, full = gc.get_threshold()
        # A storm of thousands of sockets grows the heap by millions of objects.
        assert young * middle * full >= 1_000_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
