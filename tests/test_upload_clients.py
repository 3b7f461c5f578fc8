"""``PlopClient.send_file`` and ``plop upload FILE ROOM``: a photo sent from Python and
from a terminal reaches storage and the room, on the real services' S3 storage and on
the embedded default's disk."""

from __future__ import annotations

from pathlib import Path

from client import PlopClient, PlopClientError
from tests.support.clients import unique_name
from tests.support.server import ServerProcess
from tests.support.uploads import download, png
from tests.test_cli import both_sign_up, plop, saved, succeeds

PASSWORD = "correct horse battery"


async def test_plop_client_sends_a_photo_a_member_downloads(
    any_server: ServerProcess, tmp_path: Path
) -> None:
    photo = tmp_path / "holiday.png"
    photo.write_bytes(png(64, 48))
    async with (
        PlopClient(any_server.http_url) as alice,
        PlopClient(any_server.http_url) as bob,
    ):
        await alice.sign_up(unique_name("alice"), PASSWORD)
        bob_user = (await bob.sign_up(unique_name("bob"), PASSWORD)).user
        room = await alice.create_direct_room(bob_user.id)
        sent = await alice.send_file(room.id, photo, "look")
        assert sent.text == "look"
        (attachment,) = sent.attachments
        assert (attachment.filename, attachment.content_type) == ("holiday.png", "image/png")
        assert (attachment.width, attachment.height) == (64, 48)
        got = await download(attachment.url)
        assert (got.status_code, got.content) == (200, photo.read_bytes())
        assert [message.id async for message in bob.history(room.id)] == [sent.id]
        refused = tmp_path / "tool.exe"
        refused.write_bytes(b"MZ")
        try:
            await alice.send_file(room.id, refused)
        except PlopClientError as error:
            assert error.code == "BAD_USER_INPUT"
        else:
            raise AssertionError("an .exe was taken")


async def test_plop_upload_sends_a_file_from_the_terminal(
    server_a: ServerProcess, tmp_path: Path
) -> None:
    url = server_a.http_url
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    await both_sign_up(url, (alice_config, unique_name("alice")), (bob_config, unique_name("bob")))
    room = (await succeeds(alice_config, "direct", saved(bob_config)["user_id"])).strip()
    notes = tmp_path / "notes.txt"
    notes.write_text("bring the tent\n")
    seq, message_id, link = (await succeeds(alice_config, "upload", str(notes), room)).split("\t")
    assert seq == "1" and message_id
    got = await download(link.strip())
    assert (got.status_code, got.text) == (200, "bring the tent\n")
    page = tmp_path / "page.html"
    page.write_text("<script>alert(1)</script>")
    ran = await plop(alice_config, "upload", str(page), room)
    assert ran.code == 1
    assert "BAD_USER_INPUT" in ran.stderr and "text/html" in ran.stderr
