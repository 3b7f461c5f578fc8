"""The garbage collector's pace in a server process that holds thousands of sockets.

CPython's cyclic collector makes a full pass over every tracked object once ten
middle passes have run (each after ten young ones, each after 700 net new
objects) and the objects promoted since the last full pass are a quarter of the
rest. Each open socket keeps hundreds of tracked objects for its whole life, so a
storm of thousands of sockets opening at once grows the heap by millions: with
the default pace the server made a full pass every few seconds, each over a larger
heap (15 passes, 21 s of the 90 s that 5,000 sockets took to open, the last ones
3 s each), while every handshake waited.

``settle_collector`` runs once the app is built:

- what start-up made (modules, the schema, the clients) lives as long as the
  process, so it is frozen out of every later pass;
- young passes come after ``YOUNG_OBJECTS`` net new objects instead of 700, and a
  full pass after ``MIDDLE_PASSES_PER_FULL`` middle passes instead of 10: a full
  pass per two million net new objects at most, a few in a storm. Cyclic garbage is
  still found, young garbage at every young pass; what outlived two young passes
  waits for the next full pass.
"""

from __future__ import annotations

import gc

# Net new tracked objects between young passes (CPython's default: 700).
YOUNG_OBJECTS = 10_000
# Young passes per middle pass (CPython's default, kept).
YOUNG_PASSES_PER_MIDDLE = 10
# Middle passes per full pass (CPython's default: 10): with the young pace above, a
# full pass per 2,000,000 net new objects at most.
MIDDLE_PASSES_PER_FULL = 20


def settle_collector() -> None:
    """Freezes what start-up made and sets the collector's pace (see the module)."""
    gc.collect()  # start-up's own garbage goes first, not into the frozen set
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, YOUNG_PASSES_PER_MIDDLE, MIDDLE_PASSES_PER_FULL)
