"""Photos and files: createUpload signs a ticket, the client sends the bytes straight to
storage, sendMessage(attachmentIds) attaches what storage holds, and members download
it at short-lived signed URLs. Every test runs on the real S3-compatible storage
(versitygw, started by scripts/services.sh) and on the embedded default's disk.

What storage holds is checked directly (HEAD through the backend's own client), so a
file said to be gone is really gone from storage, not only from the API.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from bson import ObjectId
from gql.transport.exceptions import TransportQueryError
from pymongo import AsyncMongoClient

from backends.object_storage import ObjectStorage
from backends.s3_objects import S3ObjectStorage
from devtools.processes import LOAD_TEST_LIMITS
from tests.conftest import RUN_ID
from tests.support.accounts import DELETE_ACCOUNT
from tests.support.chat import REGISTER_DEVICE, as_user, direct_room, group_room
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    SUBPROTOCOLS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.server import ServerProcess
from tests.support.services import RealServices
from tests.support.uploads import (
    ATTACHMENT_FIELDS,
    CREATE_UPLOAD,
    DELETE_MESSAGE,
    HISTORY_FILES,
    ME_AVATAR,
    SEND_FILES,
    UPDATE_PROFILE,
    download,
    png,
    put,
    storage_for,
    ticket,
    uploaded,
)

PASSWORD = "correct horse battery"
MAX_BYTES = 200_000
# Room for two of the largest uploads, not three.
QUOTA_BYTES = 500_000
UPLOADS_PER_HOUR = 8
PROFILE_CHANGES_PER_HOUR = 6
UPLOAD_SETTINGS = {
    "PLOP_UPDATE_PROFILE_LIMIT": str(PROFILE_CHANGES_PER_HOUR),
    "PLOP_UPDATE_PROFILE_LIMIT_SECONDS": "3600",
    "PLOP_UPLOAD_MAX_BYTES": str(MAX_BYTES),
    "PLOP_UPLOAD_QUOTA_BYTES": str(QUOTA_BYTES),
    "PLOP_CREATE_UPLOAD_LIMIT": str(UPLOADS_PER_HOUR),
    "PLOP_CREATE_UPLOAD_LIMIT_SECONDS": "3600",
}
# Short clocks, on servers of their own: URLs that expire and uploads left unused are
# seen to go within a test.
SHORT_CLOCKS = {
    "PLOP_DOWNLOAD_URL_SECONDS": "3",
    "PLOP_UPLOAD_ORPHAN_SECONDS": "2",
    "PLOP_UPLOAD_CLEANUP_INTERVAL_SECONDS": "0.5",
}
MESSAGE_WITH_FILES = f"""
subscription($r: ID!) {{
  messageAdded(roomId: $r) {{ id seq text attachments {{ {ATTACHMENT_FIELDS} }} }}
}}
"""
USER_AVATAR = "query($u: ID!) { user(id: $u) { avatarUrl } }"


@dataclass
class FileServer:
    """A Plop server and a direct handle on the storage it uses."""

    kind: str
    server: ServerProcess
    storage: ObjectStorage

    async def holds(self, attachment_id: str) -> bool:
        return await self.storage.head(f"uploads/{attachment_id}") is not None


async def _file_server(
    name: str, kind: str, env: dict[str, str], data_dir: Path
) -> AsyncIterator[FileServer]:
    if kind == "embedded":
        env = {**LOAD_TEST_LIMITS, "PLOP_DATA_DIR": str(data_dir), **env}
    server = ServerProcess(f"{RUN_ID}-{name}", env)
    storage = storage_for(env.get("PLOP_STORAGE_URL", ""), data_dir if kind == "embedded" else None)
    await storage.start()
    await server.start()
    try:
        yield FileServer(kind, server, storage)
    finally:
        await server.stop()
        await storage.close()


def _env(kind: str, real_env: dict[str, str], name: str, **more: str) -> dict[str, str]:
    base = {**real_env, "PLOP_INSTANCE_ID": name} if kind == "real" else {}
    return {**base, **UPLOAD_SETTINGS, **more}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def real_files(real_env: dict[str, str], tmp_path_factory: Any) -> AsyncIterator[FileServer]:
    async for found in _file_server(
        "files-real", "real", _env("real", real_env, "files-real"), tmp_path_factory.mktemp("r")
    ):
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedded_files(tmp_path_factory: Any) -> AsyncIterator[FileServer]:
    async for found in _file_server(
        "files-embedded", "embedded", _env("embedded", {}, ""), tmp_path_factory.mktemp("e")
    ):
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def real_short_files(
    real_env: dict[str, str], tmp_path_factory: Any
) -> AsyncIterator[FileServer]:
    env = _env("real", real_env, "files-real-short", **SHORT_CLOCKS)
    async for found in _file_server("files-real-short", "real", env, tmp_path_factory.mktemp("rs")):
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedded_short_files(tmp_path_factory: Any) -> AsyncIterator[FileServer]:
    env = _env("embedded", {}, "", **SHORT_CLOCKS)
    async for found in _file_server(
        "files-embedded-short", "embedded", env, tmp_path_factory.mktemp("es")
    ):
        yield found


@pytest.fixture(params=["real", "embedded"])
def files(request: pytest.FixtureRequest) -> FileServer:
    """Each test using it runs on versitygw and on the embedded disk."""
    found: FileServer = request.getfixturevalue(f"{request.param}_files")
    return found


@pytest.fixture(params=["real", "embedded"])
def short_files(request: pytest.FixtureRequest) -> FileServer:
    found: FileServer = request.getfixturevalue(f"{request.param}_short_files")
    return found


async def _pair(files: FileServer) -> tuple[Account, Account, str]:
    alice, bob = await sign_up(files.server), await sign_up(files.server)
    return alice, bob, await direct_room(files.server, alice, bob)


async def _send(
    files: FileServer, sender: Account, room_id: str, ids: list[str], **more: Any
) -> Any:
    data = await as_user(files.server, sender, SEND_FILES, r=room_id, t="", a=ids, **more)
    return data["sendMessage"]


async def _code(files: FileServer, account: Account, query: str, **variables: Any) -> str:
    async with http_session(files.server, account.token) as session:
        return await error_code(session, query, **variables)


async def _gone(files: FileServer, attachment_id: str) -> None:
    """Waits until storage no longer holds the upload (its deletion may trail)."""
    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        # Storage is another process: there is no event to await, so ask it again.
        while await files.holds(attachment_id):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


# ----------------------------------------------------------------- sending a photo


async def test_a_photo_reaches_members_live_and_in_history_with_its_size(
    files: FileServer,
) -> None:
    alice, bob, room_id = await _pair(files)
    photo = png(40, 30)
    for subprotocol in SUBPROTOCOLS:
        async with (
            ws_session(files.server, subprotocol, bob.token) as live,
            subscribed(files.server, live, MESSAGE_WITH_FILES, r=room_id) as added,
        ):
            attachment_id = await uploaded(files.server, alice, room_id, photo)
            sent = await _send(files, alice, room_id, [attachment_id])
            assert sent["text"] == ""
            (attachment,) = sent["attachments"]
            assert attachment["id"] == attachment_id
            assert (attachment["width"], attachment["height"]) == (40, 30)
            assert (attachment["contentType"], attachment["size"]) == ("image/png", len(photo))
            arrived = (await added.next())["messageAdded"]
            assert arrived["id"] == sent["id"]
            (live_attachment,) = arrived["attachments"]
            got = await download(live_attachment["url"])
            assert got.status_code == 200, subprotocol
            assert got.content == photo
            assert got.headers["content-type"].startswith("image/png")
    history = (await as_user(files.server, bob, HISTORY_FILES, r=room_id))["messages"]["edges"]
    assert [len(edge["node"]["attachments"]) for edge in history] == [1, 1]
    assert (await download(history[0]["node"]["attachments"][0]["url"])).content == photo


async def test_a_file_goes_with_text_and_keeps_its_name_and_type(files: FileServer) -> None:
    alice, _, room_id = await _pair(files)
    body = b"%PDF-1.4 minutes of the meeting\n"
    attachment_id = await uploaded(
        files.server, alice, room_id, body, "application/pdf", "minutes.pdf"
    )
    sent = (
        await as_user(
            files.server, alice, SEND_FILES, r=room_id, t="the minutes", a=[attachment_id]
        )
    )["sendMessage"]
    assert sent["text"] == "the minutes"
    (attachment,) = sent["attachments"]
    assert (attachment["filename"], attachment["width"], attachment["height"]) == (
        "minutes.pdf",
        None,
        None,
    )
    got = await download(attachment["url"])
    assert (got.status_code, got.content) == (200, body)


# --------------------------------------------------------------------- attackers


async def test_a_non_member_gets_neither_ticket_nor_file(files: FileServer) -> None:
    alice, _, room_id = await _pair(files)
    eve = await sign_up(files.server)
    attachment_id = await uploaded(files.server, alice, room_id, png(8, 8))
    await _send(files, alice, room_id, [attachment_id])
    assert (
        await _code(files, eve, CREATE_UPLOAD, r=room_id, f="x.png", t="image/png", s=10)
        == "FORBIDDEN"
    )
    assert await _code(files, eve, HISTORY_FILES, r=room_id) == "FORBIDDEN"
    # Naming alice's upload in a room of eve's own: it is no upload of hers.
    eve_room = await direct_room(files.server, eve, alice)
    assert await _code(files, eve, SEND_FILES, r=eve_room, t="", a=[attachment_id]) == "NOT_FOUND"


async def test_an_upload_is_attached_once_and_a_retry_returns_the_first_message(
    files: FileServer,
) -> None:
    alice, bob, room_id = await _pair(files)
    attachment_id = await uploaded(files.server, alice, room_id, png(8, 8))
    first = await _send(files, alice, room_id, [attachment_id], c="photo-1")
    retried = await _send(files, alice, room_id, [attachment_id], c="photo-1")
    assert retried["id"] == first["id"]
    assert [a["id"] for a in retried["attachments"]] == [attachment_id]
    assert (
        await _code(files, alice, SEND_FILES, r=room_id, t="", a=[attachment_id], c="photo-2")
        == "BAD_USER_INPUT"
    )
    # Two sends racing for one fresh upload: exactly one has it.
    contested = await uploaded(files.server, alice, room_id, png(9, 9))
    async with http_session(files.server, alice.token) as session:
        outcomes = await asyncio.gather(
            *(call(session, SEND_FILES, r=room_id, t="", a=[contested]) for _ in range(2)),
            return_exceptions=True,
        )
    won = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    lost = [outcome for outcome in outcomes if isinstance(outcome, TransportQueryError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].errors and lost[0].errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    history = (await as_user(files.server, bob, HISTORY_FILES, r=room_id))["messages"]["edges"]
    assert sum(len(edge["node"]["attachments"]) for edge in history) == 2


# Rounds of sends racing under one clientId: the interleaving that loses a file (the
# copy that names the upload stored second) is not the first one every time.
SAME_SEND_ROUNDS = 6


async def test_one_send_made_at_once_many_times_keeps_its_files(files: FileServer) -> None:
    """A client resending before the first answer came: whichever copy of the send is
    stored, the message it becomes holds the file every copy named."""
    alice, bob, room_id = await _pair(files)
    named: list[str] = []
    async with http_session(files.server, alice.token) as session:
        for number in range(SAME_SEND_ROUNDS):
            attachment_id = await uploaded(files.server, alice, room_id, png(8, 8 + number))
            named.append(attachment_id)
            outcomes = await asyncio.gather(
                *(
                    call(
                        session, SEND_FILES, r=room_id, t="", a=[attachment_id], c=f"same-{number}"
                    )
                    for _ in range(3)
                ),
                return_exceptions=True,
            )
            won = [outcome for outcome in outcomes if isinstance(outcome, dict)]
            assert won and len({sent["sendMessage"]["id"] for sent in won}) == 1, outcomes
            for lost in outcomes:
                if isinstance(lost, TransportQueryError):
                    assert lost.errors and lost.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
                else:
                    assert isinstance(lost, dict), lost
    history = (await as_user(files.server, bob, HISTORY_FILES, r=room_id))["messages"]["edges"]
    held = [[a["id"] for a in edge["node"]["attachments"]] for edge in history]
    assert sorted(held) == sorted([attachment_id] for attachment_id in named)


async def test_storage_must_hold_exactly_what_was_announced(files: FileServer) -> None:
    alice, _, room_id = await _pair(files)
    body = png(10, 10)
    # A body longer than announced: storage itself refuses it (the size is signed).
    lying = await ticket(files.server, alice, room_id, body)
    refused = await put(lying, body + b"more bytes")
    assert refused.status_code in (400, 403), refused.status_code
    assert not await files.holds(lying["attachmentId"])
    assert (
        await _code(files, alice, SEND_FILES, r=room_id, t="", a=[lying["attachmentId"]])
        == "BAD_USER_INPUT"
    )
    # Another content type than announced: refused too.
    other_type = await ticket(files.server, alice, room_id, body)
    refused = await put(
        {**other_type, "fields": [{"name": "Content-Type", "value": "text/html"}]}, body
    )
    assert refused.status_code in (400, 403), refused.status_code
    assert not await files.holds(other_type["attachmentId"])
    # Announced, never sent.
    never = await ticket(files.server, alice, room_id, body)
    assert (
        await _code(files, alice, SEND_FILES, r=room_id, t="", a=[never["attachmentId"]])
        == "BAD_USER_INPUT"
    )
    # Bytes of the announced size and type that are no image.
    fake = b"<script>alert(1)</script>".ljust(64, b" ")
    fake_id = await uploaded(files.server, alice, room_id, fake, "image/png")
    assert await _code(files, alice, SEND_FILES, r=room_id, t="", a=[fake_id]) == "BAD_USER_INPUT"


async def test_a_ticket_writes_once_so_checked_bytes_cannot_be_swapped(
    files: FileServer,
) -> None:
    alice, _, room_id = await _pair(files)
    photo = png(10, 10, "white")
    upload = await ticket(files.server, alice, room_id, photo)
    assert (await put(upload, photo)).status_code == 200
    sent = await _send(files, alice, room_id, [upload["attachmentId"]])
    swapped = photo[:-1] + bytes([photo[-1] ^ 1])  # the same size and type, other bytes
    assert (await put(upload, swapped)).status_code == 412
    assert (await download(sent["attachments"][0]["url"])).content == photo


async def test_an_upload_of_another_user_or_room_is_refused(files: FileServer) -> None:
    alice, bob, room_id = await _pair(files)
    carol = await sign_up(files.server)
    other_room = await direct_room(files.server, alice, carol)
    for_other_room = await uploaded(files.server, alice, other_room, png(8, 8))
    assert (
        await _code(files, alice, SEND_FILES, r=room_id, t="", a=[for_other_room])
        == "BAD_USER_INPUT"
    )
    bobs = await uploaded(files.server, bob, room_id, png(8, 8))
    assert await _code(files, alice, SEND_FILES, r=room_id, t="", a=[bobs]) == "NOT_FOUND"
    assert await _code(files, alice, UPDATE_PROFILE, a=bobs) == "NOT_FOUND"
    # Still bob's to use.
    assert (await _send(files, bob, room_id, [bobs]))["attachments"][0]["id"] == bobs


async def test_sizes_types_names_and_ill_typed_values_are_refused(files: FileServer) -> None:
    alice, _, room_id = await _pair(files)
    for filename, content_type, size in (
        ("big.png", "image/png", MAX_BYTES + 1),
        ("empty.png", "image/png", 0),
        ("negative.png", "image/png", -5),
        ("page.html", "text/html", 100),
        ("vector.svg", "image/svg+xml", 100),
        ("../../etc/passwd", "text/plain", 100),
        ("", "text/plain", 100),
    ):
        code = await _code(
            files, alice, CREATE_UPLOAD, r=room_id, f=filename, t=content_type, s=size
        )
        assert code == "BAD_USER_INPUT", (filename, content_type, size)
    assert (
        await _code(files, alice, CREATE_UPLOAD, r=room_id, f="a.png", t="image/png", s="big")
        == "BAD_USER_INPUT"
    )
    assert await _code(files, alice, SEND_FILES, r=room_id, t="", a=["nope"]) == "BAD_USER_INPUT"
    assert await _code(files, alice, SEND_FILES, r=room_id, t="", a=[]) == "BAD_USER_INPUT"
    assert await _code(files, alice, UPDATE_PROFILE, a="nope") == "BAD_USER_INPUT"
    assert await _code(files, alice, UPDATE_PROFILE) == "BAD_USER_INPUT"


async def test_upload_and_profile_floods_are_rate_limited_and_a_quota_holds(
    files: FileServer,
) -> None:
    flooder, quota_user = await sign_up(files.server), await sign_up(files.server)
    room_id = await direct_room(files.server, flooder, quota_user)
    async with http_session(files.server, flooder.token) as session:
        for _ in range(UPLOADS_PER_HOUR):
            await call(session, CREATE_UPLOAD, r=room_id, f="a.txt", t="text/plain", s=10)
        with pytest.raises(TransportQueryError) as refused:
            await call(session, CREATE_UPLOAD, r=room_id, f="a.txt", t="text/plain", s=10)
    (error,) = refused.value.errors or []
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] > 0
    async with http_session(files.server, flooder.token) as session:
        for number in range(PROFILE_CHANGES_PER_HOUR):
            await call(session, UPDATE_PROFILE, d=f"name {number}")
        assert await error_code(session, UPDATE_PROFILE, d="one more") == "RATE_LIMITED"
    async with http_session(files.server, quota_user.token) as session:
        for _ in range(QUOTA_BYTES // MAX_BYTES):
            await call(session, CREATE_UPLOAD, r=room_id, f="a.txt", t="text/plain", s=MAX_BYTES)
        assert (
            await error_code(
                session, CREATE_UPLOAD, r=room_id, f="a.txt", t="text/plain", s=MAX_BYTES
            )
            == "BAD_USER_INPUT"
        )


# ------------------------------------------------------------------- deletions


async def test_deleting_a_message_deletes_its_file_from_storage(files: FileServer) -> None:
    alice, bob, room_id = await _pair(files)
    attachment_id = await uploaded(files.server, alice, room_id, png(12, 12))
    sent = await _send(files, alice, room_id, [attachment_id])
    url = sent["attachments"][0]["url"]
    assert (await download(url)).status_code == 200
    deleted = (await as_user(files.server, alice, DELETE_MESSAGE, m=sent["id"]))["deleteMessage"]
    assert deleted == {"deleted": True, "attachments": []}
    assert not await files.holds(attachment_id)
    assert (await download(url)).status_code == 404
    history = (await as_user(files.server, bob, HISTORY_FILES, r=room_id))["messages"]["edges"]
    assert history[0]["node"]["attachments"] == []


async def test_deleting_an_account_deletes_every_file_it_uploaded(files: FileServer) -> None:
    alice, bob, _ = await _pair(files)
    room_id = await group_room(files.server, alice, [bob])
    attached = await uploaded(files.server, alice, room_id, png(8, 8))
    await _send(files, alice, room_id, [attached])
    avatar = await uploaded(files.server, alice, room_id, png(16, 16))
    await as_user(files.server, alice, UPDATE_PROFILE, a=avatar)
    unused = await uploaded(files.server, alice, room_id, b"notes", "text/plain", "n.txt")
    bobs = await uploaded(files.server, bob, room_id, png(8, 8))
    await _send(files, bob, room_id, [bobs])
    for attachment_id in (attached, avatar, unused):
        assert await files.holds(attachment_id)
    assert (await as_user(files.server, alice, DELETE_ACCOUNT, p=PASSWORD))["deleteAccount"]
    for attachment_id in (attached, avatar, unused):
        assert not await files.holds(attachment_id)
    assert await files.holds(bobs)
    assert (await as_user(files.server, bob, USER_AVATAR, u=alice.id))["user"]["avatarUrl"] is None


# --------------------------------------------------------------- profile pictures


async def test_a_profile_picture_is_shown_replaced_and_checked(files: FileServer) -> None:
    alice, bob, room_id = await _pair(files)
    first_picture = png(32, 32, "blue")
    first = await uploaded(files.server, alice, room_id, first_picture)
    updated = (await as_user(files.server, alice, UPDATE_PROFILE, d="Alice A.", a=first))[
        "updateProfile"
    ]
    assert updated["displayName"] == "Alice A."
    me = await as_user(files.server, alice, "query { me { displayName } }")
    assert me["me"]["displayName"] == "Alice A."
    seen_by_bob = (await as_user(files.server, bob, USER_AVATAR, u=alice.id))["user"]["avatarUrl"]
    assert (await download(seen_by_bob)).content == first_picture
    second_picture = png(24, 24, "green")
    second = await uploaded(files.server, alice, room_id, second_picture)
    await as_user(files.server, alice, UPDATE_PROFILE, a=second)
    mine = (await as_user(files.server, alice, ME_AVATAR))["me"]["avatarUrl"]
    assert (await download(mine)).content == second_picture
    await _gone(files, first)  # the replaced picture is deleted from storage
    document = await uploaded(files.server, alice, room_id, b"a letter", "text/plain", "l.txt")
    assert await _code(files, alice, UPDATE_PROFILE, a=document) == "BAD_USER_INPUT"
    attached = await uploaded(files.server, alice, room_id, png(8, 8))
    await _send(files, alice, room_id, [attached])
    assert await _code(files, alice, UPDATE_PROFILE, a=attached) == "BAD_USER_INPUT"
    assert await _code(files, alice, SEND_FILES, r=room_id, t="", a=[second]) == "BAD_USER_INPUT"


# ------------------------------------------------------------ expiry and clean-up


async def test_a_download_url_expires_and_a_tampered_one_is_refused(
    short_files: FileServer,
) -> None:
    alice, bob, room_id = await _pair(short_files)
    attachment_id = await uploaded(short_files.server, alice, room_id, png(8, 8))
    await _send(short_files, alice, room_id, [attachment_id])
    history = await as_user(short_files.server, bob, HISTORY_FILES, r=room_id)
    url: str = history["messages"]["edges"][0]["node"]["attachments"][0]["url"]
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert (await download(tampered)).status_code == 403
    assert (await download(url)).status_code == 200
    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        # The URL's own clock decides; no event tells when it passed.
        while (await download(url)).status_code == 200:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    assert (await download(url)).status_code == 403


async def test_an_upload_never_attached_is_deleted(short_files: FileServer) -> None:
    alice, _, room_id = await _pair(short_files)
    unused = await uploaded(short_files.server, alice, room_id, b"draft", "text/plain", "d.txt")
    await _gone(short_files, unused)
    assert await _code(short_files, alice, SEND_FILES, r=room_id, t="", a=[unused]) == "NOT_FOUND"


async def test_urls_are_signed_for_the_address_clients_reach_storage_at(
    real_services: RealServices,
) -> None:
    """Behind a container network Plop reaches storage at one host and clients at
    another: ``public=`` signs for the clients' host (SigV4 signs the host)."""
    parts = urlsplit(real_services.storage_url)
    public = f"http://localhost:{parts.port}"
    storage = S3ObjectStorage(f"{real_services.storage_url}?public={public}", 5.0)
    await storage.start()
    try:
        key = f"uploads/{secrets.token_hex(12)}"
        grant = await storage.grant_upload(key, "text/plain", 5, 60)
        assert grant.url.startswith(f"{public}/")
        async with httpx.AsyncClient(timeout=30) as client:
            sent = await client.put(grant.url, content=b"hello", headers=dict(grant.fields))
            assert sent.status_code == 200
            url = await storage.download_url(key, 60)
            assert url.startswith(f"{public}/")
            assert (await client.get(url)).content == b"hello"
            # Signed for the public host, the URL does not pass at another one.
            elsewhere = url.replace(public, f"http://127.0.0.1:{parts.port}")
            assert (await client.get(elsewhere)).status_code == 403
        await storage.delete(key)
    finally:
        await storage.close()


async def _state(uploads: Any, upload_id: str) -> str | None:
    found = await uploads.find_one({"_id": ObjectId(upload_id)})
    return None if found is None else str(found["state"])


async def test_a_send_a_dead_instance_left_half_done_is_settled_by_the_clean_up(
    real_short_files: FileServer, real_env: dict[str, str]
) -> None:
    """An instance that died between taking an upload for a send and storing the
    message leaves the upload ATTACHING: the clean-up attaches it if the message was
    stored, and deletes it if not."""
    files = real_short_files
    alice, bob, room_id = await _pair(files)
    stored_id = await uploaded(files.server, alice, room_id, png(8, 8))
    sent = await _send(files, alice, room_id, [stored_id])
    lost_id = await uploaded(files.server, alice, room_id, png(9, 9))
    store: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        uploads = store.get_default_database()["uploads"]
        # What UploadService.claim writes, for a message stored and for one that never was.
        for upload_id, message_id in ((stored_id, sent["id"]), (lost_id, str(ObjectId()))):
            left = await uploads.update_one(
                {"_id": ObjectId(upload_id)},
                {
                    "$set": {
                        "state": "ATTACHING",
                        "message_id": ObjectId(message_id),
                        "message_key": f"{alice.id}:lost",
                    }
                },
            )
            assert left.modified_count == 1
        await _gone(files, lost_id)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            # The clean-up runs in the server's own time; its result is in the store.
            while await _state(uploads, stored_id) != "ATTACHED":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await store.close()
    assert await files.holds(stored_id)
    history = (await as_user(files.server, bob, HISTORY_FILES, r=room_id))["messages"]["edges"]
    assert [a["id"] for a in history[0]["node"]["attachments"]] == [stored_id]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("files-push")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pusher(real_env: dict[str, str], receiver: PushReceiver) -> AsyncIterator[ServerProcess]:
    async with webhook_pusher(f"{RUN_ID}-files-push", real_env, receiver) as server:
        yield server


async def test_a_photo_sent_alone_is_pushed_as_a_file(
    pusher: ServerProcess, receiver: PushReceiver
) -> None:
    alice, bob = await sign_up(pusher), await sign_up(pusher)
    room_id = await direct_room(pusher, alice, bob)
    device = f"device-{bob.id}"
    await as_user(pusher, bob, REGISTER_DEVICE, p="WEBHOOK", t=device)
    attachment_id = await uploaded(pusher, alice, room_id, png(8, 8))
    await as_user(pusher, alice, SEND_FILES, r=room_id, t="", a=[attachment_id])
    (push,) = await receiver.wait_for(1, device)
    assert push.body == "sent a file"
