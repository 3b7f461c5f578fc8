"""A document sent again is neither parsed nor validated again (unit tests, no server)."""

from __future__ import annotations

import uuid
from typing import Any

from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from schema.root import DOCUMENT_CACHE_SIZE, build_schema


async def test_a_document_sent_again_is_not_parsed_or_validated_again() -> None:
    schema = build_schema()
    query = f"query Probe_{uuid.uuid4().hex} {{ __typename }}"
    # strawberry's module-level LRU caches (functools wrappers, typed as plain callables)
    parses: Any = _get_parse_cache(DOCUMENT_CACHE_SIZE)
    validations: Any = _get_validate_cache(DOCUMENT_CACHE_SIZE)
    parsed, validated = parses.cache_info(), validations.cache_info()
    for _ in range(3):
        result = await schema.execute(query)
        assert result.errors is None and result.data == {"__typename": "Query"}
    assert parses.cache_info().misses - parsed.misses == 1
    assert parses.cache_info().hits - parsed.hits == 2
    assert validations.cache_info().misses - validated.misses == 1
    assert validations.cache_info().hits - validated.hits == 2


async def test_the_limits_still_apply_to_a_cached_document() -> None:
    schema = build_schema()
    too_many_aliases = "{ " + "a: __typename " * 200 + "}"
    for _ in range(2):
        result = await schema.execute(too_many_aliases)
        assert result.errors and "aliases" in result.errors[0].message.lower()
