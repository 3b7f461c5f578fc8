"""The webhook signature: HMAC-SHA256 over ``<timestamp>.<body>``.

A request carries ``Plop-Timestamp`` (Unix seconds) and ``Plop-Signature: v1=<hex>``.
A receiver recomputes the HMAC with the shared secret over the timestamp, a dot, and
the raw body bytes, compares in constant time, and refuses a timestamp older than a
few minutes (replays).
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "Plop-Timestamp"
SIGNATURE_HEADER = "Plop-Signature"
SCHEME = "v1"
MAX_SKEW_SECONDS = 300
# Unix seconds have 10 digits until the year 2286; more is not a timestamp.
MAX_TIMESTAMP_DIGITS = 12


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Plop-Signature`` header value for this timestamp and body."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, timestamp: str, header: str, body: bytes, now: float) -> bool:
    """Whether a received webhook is authentic and fresh; False for any malformed header.

    Headers come from whoever sent the request, so nothing in them may raise: the
    timestamp must be ASCII digits (``isdigit`` alone takes "٣" and "²", and ``int``
    refuses 5,000 digits), and the signature is compared as bytes (``compare_digest``
    refuses a str that is not ASCII).
    """
    if not (0 < len(timestamp) <= MAX_TIMESTAMP_DIGITS and timestamp.isascii()):
        return False
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    expected = signature(secret, int(timestamp), body).encode()
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))
