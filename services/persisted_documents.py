"""Which document a request runs when it may name it by its sha256.

Two modes, picked by the settings:

- automatic persisted queries (Apollo's protocol, the default): a hash alone runs the
  document held for it, or is answered PERSISTED_QUERY_NOT_FOUND, after which the
  client sends the text with the hash; that text is checked against the hash (a
  mismatch is BAD_USER_INPUT and stores nothing), capped in size, counted against
  the client's registration budget, stored and run. A request with text and no hash
  runs as it always did, at no extra cost.
- trusted documents (``PLOP_TRUSTED_DOCUMENTS``): only the manifest's documents run,
  named by their hash or sent in full; anything else is PERSISTED_QUERY_NOT_ALLOWED,
  and nothing is ever registered.
"""

from __future__ import annotations

from collections.abc import Mapping

from errors import (
    BadUserInput,
    PersistedQueryNotAllowed,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
    RateLimited,
)
from observability.metrics import (
    PERSISTED_HIT,
    PERSISTED_MISS,
    PERSISTED_QUERIES,
    PERSISTED_REFUSED,
    PERSISTED_REGISTERED,
    PERSISTED_TRUSTED,
)
from services.persisted_query_store import PersistedQueryStore
from services.rate_limits import LimitName, RateLimiter
from services.trusted_documents import is_sha256_hex, sha256_of

NOT_TRUSTED_MESSAGE = "this server runs trusted documents only, and this is not one of them"


def _refused(error: Exception) -> Exception:
    PERSISTED_QUERIES.labels(outcome=PERSISTED_REFUSED).inc()
    return error


class PersistedDocuments:
    """The rules of naming documents by hash; ``document`` says what to run."""

    def __init__(
        self,
        store: PersistedQueryStore,
        limits: RateLimiter,
        *,
        enabled: bool,
        max_document_bytes: int,
        trusted: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._enabled = enabled
        self._max_document_bytes = max_document_bytes
        self._trusted = trusted

    @property
    def trusted_only(self) -> bool:
        """Whether every request's document must be on the trusted list."""
        return self._trusted is not None

    async def document(self, query: str | None, sha256_hash: str | None, client: str) -> str | None:
        """The document the request runs: ``query``, or the one its hash names.

        None when the request has neither (the caller's usual "no query" answer).
        PERSISTED_QUERY_NOT_FOUND / _NOT_SUPPORTED / _NOT_ALLOWED, BAD_USER_INPUT
        (a malformed or wrong hash, a document over the size cap) or RATE_LIMITED (a
        registration flood) when it runs nothing.
        """
        if self._trusted is not None:
            return self._trusted_document(self._trusted, query, sha256_hash)
        if sha256_hash is None:
            return query
        if not self._enabled:
            raise _refused(PersistedQueryNotSupported())
        _check_hash_form(sha256_hash)
        if query is None:
            document = await self._store.get(sha256_hash)
            if document is None:
                PERSISTED_QUERIES.labels(outcome=PERSISTED_MISS).inc()
                raise PersistedQueryNotFound()
            PERSISTED_QUERIES.labels(outcome=PERSISTED_HIT).inc()
            return document
        return await self._register(query, sha256_hash, client)

    async def _register(self, query: str, sha256_hash: str, client: str) -> str:
        _check_matches(query, sha256_hash)
        if self._store.held_here(sha256_hash) is not None:
            return query  # registered already: nothing to spend or store
        size = len(query.encode())
        if size > self._max_document_bytes:
            raise _refused(
                BadUserInput(
                    f"a persisted document is at most {self._max_document_bytes} bytes "
                    f"(this one has {size}); send it without extensions.persistedQuery"
                )
            )
        try:
            await self._limits.hit(LimitName.PERSIST_QUERY, client)
        except RateLimited:
            PERSISTED_QUERIES.labels(outcome=PERSISTED_REFUSED).inc()
            raise
        await self._store.put(sha256_hash, query)
        PERSISTED_QUERIES.labels(outcome=PERSISTED_REGISTERED).inc()
        return query

    def _trusted_document(
        self, trusted: Mapping[str, str], query: str | None, sha256_hash: str | None
    ) -> str | None:
        if sha256_hash is None:
            if query is None:
                return None
            sha256_hash = sha256_of(query)
        else:
            _check_hash_form(sha256_hash)
            if query is not None:
                _check_matches(query, sha256_hash)
        document = trusted.get(sha256_hash)
        if document is None:
            raise _refused(PersistedQueryNotAllowed(NOT_TRUSTED_MESSAGE))
        PERSISTED_QUERIES.labels(outcome=PERSISTED_TRUSTED).inc()
        return document


def _check_hash_form(sha256_hash: str) -> None:
    if not is_sha256_hex(sha256_hash):
        raise _refused(BadUserInput("a document's hash is its sha256 in 64 lowercase hex digits"))


def _check_matches(query: str, sha256_hash: str) -> None:
    if sha256_of(query) != sha256_hash:
        raise _refused(BadUserInput("provided sha does not match query"))
