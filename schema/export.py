"""``python -m schema.export``: writes the served SDL to ``schema.graphql``.

The exported file is committed; ``tests/test_schema_contract.py`` fails when it is
stale, naming this command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from schema.root import build_schema

EXPORTED = Path(__file__).resolve().parents[1] / "schema.graphql"
EXPORT_COMMAND = "python -m schema.export"


def served_sdl() -> str:
    """The served schema as SDL, as it is written to ``schema.graphql``."""
    return str(build_schema()).strip() + "\n"


def main(argv: list[str]) -> None:
    """Writes the SDL to ``argv[0]`` if given, else to the committed ``schema.graphql``."""
    target = Path(argv[0]) if argv else EXPORTED
    target.write_text(served_sdl())
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
