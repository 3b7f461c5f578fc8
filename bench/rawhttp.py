"""A minimal keep-alive HTTP/1.1 client over asyncio streams, for the load side.

The load generator must cost less than the servers it measures; a general client
(httpx) spends more per request than a raw endpoint does. This one writes a POST on a
kept-alive connection and reads the answer by Content-Length or chunks, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

READ_LIMIT = 1 << 20


class HttpError(Exception):
    """An answer that is not 200, or a connection that broke."""


class HttpConnection:
    """One kept-alive connection to ``host:port``; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """The open connection, or a new one; whether it was reused."""
        if self._reader is not None and self._writer is not None and not self._writer.is_closing():
            return self._reader, self._writer, True
        self._reader, self._writer = await asyncio.open_connection(
            self._host, self._port, limit=READ_LIMIT
        )
        return self._reader, self._writer, False

    async def post(self, path: str, body: bytes, token: str | None = None) -> bytes:
        """POSTs a JSON body; the answer's body, or HttpError.

        A kept-alive connection the server closed while idle fails on first use; the
        request is then sent once more on a new connection (Plop's sends carry a
        clientId, so a repeat cannot store a message twice).
        """
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{auth}\r\n"
        ).encode()
        while True:
            reused = False
            try:
                async with asyncio.timeout(self._timeout):
                    reader, writer, reused = await self._connect()
                    writer.write(head + body)
                    return await self._answer(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                await self.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue
                raise HttpError(f"POST {path}: {exc!r}") from exc

    async def post_json(self, path: str, payload: object, token: str | None = None) -> Any:
        return json.loads(await self.post(path, json.dumps(payload).encode(), token))

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunks(reader)
        else:
            body = await reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        if status != 200:
            raise HttpError(f"HTTP {status}: {body[:300]!r}")
        return body

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
