"""The manifest of trusted documents (``PLOP_TRUSTED_DOCUMENTS``): what may run.

Two forms are read, both JSON:

- Apollo's persisted-query manifest: ``{"format": "apollo-persisted-query-manifest",
  "version": 1, "operations": [{"id", "name", "type", "body"}, ...]}``;
- a map of document ids to documents: ``{"sha256:<hash>": "query ..."}`` (the
  GraphQL-over-HTTP persisted documents appendix's ids) or ``{"<hash>": "..."}``.

Every document is listed under the sha256 of its text, the hash clients send; an id
that is not that hash (an Apollo manifest made with another id generator) is refused
at start-up, since no client could name the document by it here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

from errors import ConfigError

APOLLO_MANIFEST_FORMAT = "apollo-persisted-query-manifest"
SHA256_PREFIX = "sha256:"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_of(document: str) -> str:
    """The lowercase hex sha256 of a document's UTF-8 text, as clients compute it."""
    return hashlib.sha256(document.encode()).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return _SHA256_HEX.fullmatch(value) is not None


def _documents_of(manifest: object) -> dict[str, str]:
    """The manifest's documents by their declared ids (prefix dropped)."""
    if not isinstance(manifest, dict):
        raise ConfigError("the trusted documents manifest must be a JSON object")
    if manifest.get("format") == APOLLO_MANIFEST_FORMAT:
        if manifest.get("version") != 1:
            raise ConfigError("only version 1 of Apollo's persisted-query manifest is read")
        operations = manifest.get("operations")
        if not isinstance(operations, list):
            raise ConfigError("an Apollo manifest needs a list of operations")
        found: dict[str, str] = {}
        for operation in operations:
            if not isinstance(operation, dict):
                raise ConfigError("each operation of the manifest must be an object")
            identifier, body = operation.get("id"), operation.get("body")
            if not isinstance(identifier, str) or not isinstance(body, str):
                raise ConfigError("each operation of the manifest needs a string id and body")
            found[identifier] = body
        return found
    listed: dict[str, str] = {}
    for identifier, body in manifest.items():
        if not isinstance(body, str):
            raise ConfigError(f"trusted document {identifier!r} must be a string")
        listed[identifier.removeprefix(SHA256_PREFIX)] = body
    return listed


def trusted_documents(manifest: object) -> Mapping[str, str]:
    """The documents of a parsed manifest by their sha256; ConfigError if any id is
    not the sha256 of its document."""
    by_hash: dict[str, str] = {}
    for identifier, body in _documents_of(manifest).items():
        actual = sha256_of(body)
        if identifier != actual:
            raise ConfigError(
                f"trusted document {identifier!r} is not named by its sha256 ({actual})"
            )
        by_hash[actual] = body
    return by_hash


def load_trusted_documents(path: Path) -> Mapping[str, str]:
    """The trusted documents of the manifest file at ``path``; ConfigError if it cannot
    be read or is not one of the two forms."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the trusted documents manifest {path}: {exc}") from exc
    return trusted_documents(manifest)
