"""The suite's file order knows every test file: a file it does not know is weighed at
a guess per test, and a long one guessed short starts late and keeps one worker busy
after the others are done (tests/support/file_order.py)."""

from __future__ import annotations

from pathlib import Path

from tests.support.file_order import FILE_SECONDS

TESTS = Path(__file__).resolve().parent


def test_every_test_file_has_a_measured_time_and_every_time_a_file() -> None:
    files = {path.name for path in TESTS.glob("test_*.py")}
    unweighed = sorted(files - FILE_SECONDS.keys())
    assert not unweighed, (
        f"no time in tests/support/file_order.py for {unweighed}: add each file's seconds "
        "from a run with --durations=0"
    )
    assert sorted(FILE_SECONDS.keys() - files) == [], "times of files that are gone"
