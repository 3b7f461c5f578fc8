"""The ``plop`` commands as a user runs them: real processes, real servers, real sockets."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import secrets
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli.config import migrate_credentials
from client import Credentials, PlopClient, PlopClientError, save_credentials
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    active_subscriptions,
    unique_name,
    wait_active_subscriptions,
)
from tests.support.server import ServerProcess, free_port
from tests.test_client import settled

PLOP = Path(sys.executable).parent / "plop"
PASSWORD = "correct horse battery"
COMMAND_TIMEOUT_SECONDS = 60.0
RESUME_TIMEOUT_SECONDS = 90.0


def plop_env(config: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``plop`` command: no PLOP_* of the test run, this config dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOP_")}
    env.update({"PLOP_CLIENT_CONFIG_DIR": str(config), **extra})
    return env


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


async def plop(
    config: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Ran:
    """Runs one ``plop`` command to its end."""
    process = await asyncio.create_subprocess_exec(
        str(PLOP),
        *args,
        env=env or plop_env(config),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def succeeds(config: Path, *args: str, stdin: str | None = None) -> str:
    """Runs a command that must succeed; returns its standard output."""
    ran = await plop(config, *args, stdin=stdin)
    assert ran.code == 0, f"plop {' '.join(args)} failed ({ran.code}):\n{ran.stderr}"
    return ran.stdout


class Tail:
    """A running ``plop tail``; the test reads its lines as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def _line(self, stream: asyncio.StreamReader | None, within: float) -> str:
        assert stream is not None
        async with asyncio.timeout(within):
            line = await stream.readline()
        assert line, f"plop tail ended ({await self._process.wait()})"
        return line.decode().rstrip("\n")

    async def line(self, within: float = EVENT_TIMEOUT_SECONDS) -> str:
        return await self._line(self._process.stdout, within)

    async def lines(self, count: int, within: float = EVENT_TIMEOUT_SECONDS) -> list[str]:
        async with asyncio.timeout(within):
            return [await self.line(within) for _ in range(count)]

    async def notice(self, within: float = EVENT_TIMEOUT_SECONDS) -> str:
        """The next line on standard error."""
        return await self._line(self._process.stderr, within)

    async def stop(self) -> None:
        if self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()


@asynccontextmanager
async def tailing(config: Path, *args: str) -> AsyncIterator[Tail]:
    process = await asyncio.create_subprocess_exec(
        str(PLOP),
        "tail",
        *args,
        env=plop_env(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tail = Tail(process)
    try:
        yield tail
    finally:
        await tail.stop()


def saved(config: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((config / "credentials.json").read_text())
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_signup_and_login_save_credentials_only_the_owner_can_read(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    username = unique_name()
    url = embedded_server.http_url
    await succeeds(
        config, "signup", "--url", url, "--password-stdin", username, stdin=f"{PASSWORD}\n"
    )
    credentials = config / "credentials.json"
    assert mode(credentials) == 0o600 and mode(config) == 0o700
    signed_up = saved(config)
    assert (signed_up["url"], signed_up["username"]) == (url, username)

    credentials.chmod(0o644)  # a file loosened by hand is replaced, not reused
    out = await succeeds(
        config, "login", "--url", url, "--password-stdin", username, stdin=PASSWORD
    )
    logged_in = saved(config)
    assert mode(credentials) == 0o600
    assert logged_in["token"] != signed_up["token"]
    assert logged_in["user_id"] == signed_up["user_id"] and signed_up["user_id"] in out
    assert sorted(path.name for path in config.iterdir()) == ["credentials.json"]
    # The saved token works; an empty listing says so on stderr, not in the listing.
    empty = await plop(config, "rooms")
    assert (empty.code, empty.stdout, empty.stderr) == (0, "", "no rooms yet\n")

    wrong = await plop(
        config, "login", "--url", url, "--password-stdin", username, stdin="not it\n"
    )
    assert wrong.code == 1 and "UNAUTHENTICATED" in wrong.stderr
    assert saved(config) == logged_in


async def test_credentials_go_to_the_xdg_config_dir_by_default(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    env = plop_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"))
    del env["PLOP_CLIENT_CONFIG_DIR"]
    args = ("signup", "--url", embedded_server.http_url, "--password-stdin", unique_name())
    ran = await plop(tmp_path, *args, stdin=PASSWORD, env=env)
    assert ran.code == 0, ran.stderr
    assert mode(tmp_path / "xdg" / "plop" / "credentials.json") == 0o600
    assert not (tmp_path / "home").exists()


async def test_a_relative_xdg_config_home_is_ignored(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = plop_env(tmp_path, XDG_CONFIG_HOME="relative", HOME=str(home))
    del env["PLOP_CLIENT_CONFIG_DIR"]
    args = ("signup", "--url", embedded_server.http_url, "--password-stdin", unique_name())
    process = await asyncio.create_subprocess_exec(
        str(PLOP),
        *args,
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
        _, err = await process.communicate(PASSWORD.encode())
    assert process.returncode == 0, err.decode()
    assert mode(home / ".config" / "plop" / "credentials.json") == 0o600
    assert not (tmp_path / "relative").exists()


async def test_commands_need_a_login_first(tmp_path: Path) -> None:
    for args in (
        ("send", "room", "hi"),
        ("tail", "room"),
        ("rooms",),
        ("whoami",),
        ("search", "a"),
        ("sessions",),
        ("end-session", "0" * 64),
        ("passwd", "--password-stdin"),
        ("delete-account", "--yes", "--password-stdin"),
    ):
        ran = await plop(tmp_path / "empty", *args)
        assert ran.code == 1 and "plop login" in ran.stderr, ran.stderr
    ran = await plop(tmp_path / "empty", "logout")
    assert ran.code == 1 and "not logged in" in ran.stderr, ran.stderr


async def test_a_url_that_is_not_http_is_refused_before_anything_runs(tmp_path: Path) -> None:
    ran = await plop(tmp_path, "login", "--url", "ws://127.0.0.1:8000/graphql", "someone")
    assert ran.code == 2 and "must be http:// or https://" in ran.stderr
    assert not tmp_path.joinpath("credentials.json").exists()


async def test_help_lists_every_command(tmp_path: Path) -> None:
    out = await succeeds(tmp_path, "--help")
    commands = ("serve", "signup", "login", "logout", "whoami", "search", "send", "edit")
    more = ("delete", "tail", "rooms", "direct", "group", "invitations", "mute", "unmute")
    for command in (*commands, *more, "sessions"):
        assert f"  {command} " in out
    for command in ("end-session", "passwd", "delete-account"):
        assert f"  {command} " in out
    group_help = await succeeds(tmp_path, "group", "--help")
    for command in ("create", "rename", "remove", "role"):
        assert f"  {command} " in group_help


async def both_sign_up(url: str, *users: tuple[Path, str]) -> None:
    """``plop signup`` for each (config dir, username), side by side: each command's
    start-up is most of its time, and the sign-ups do not depend on each other."""
    await asyncio.gather(
        *(
            succeeds(config, "signup", "--url", url, "--password-stdin", name, stdin=PASSWORD)
            for config, name in users
        )
    )


async def test_send_prints_the_seq_and_tail_prints_each_new_message_once(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    url = embedded_server.http_url
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    alice, bob = unique_name("alice"), unique_name("bob")
    await both_sign_up(url, (alice_config, alice), (bob_config, bob))
    room = (await succeeds(alice_config, "direct", saved(bob_config)["user_id"])).strip()
    assert (await succeeds(alice_config, "send", room, "before the tail")).strip() == "1"

    async with settled(embedded_server), tailing(bob_config, room) as tail:
        assert await tail.notice() == f"Following room {room} after seq 1."
        sent = [
            await succeeds(alice_config, "send", room, "tab\there\nnew line", "--client-id", "k1"),
            await succeeds(alice_config, "send", room, "retried", "--client-id", "k1"),
            await succeeds(alice_config, "send", room, "third"),
        ]
        shown = await tail.lines(2)
    assert [seq.strip() for seq in sent] == ["2", "2", "3"]
    assert shown == [f"2\t{alice}\ttab\\there\\nnew line", f"3\t{alice}\tthird"]

    async with (
        settled(embedded_server),
        tailing(bob_config, room, "--after-seq", "0", "--subprotocol", "graphql-ws") as tail,
    ):
        replayed = await tail.lines(3)
    assert [line.split("\t")[0] for line in replayed] == ["1", "2", "3"]

    listed = (await succeeds(bob_config, "rooms")).splitlines()
    assert listed == [f"{room}\tDIRECT\t{alice}\t3\t3"]


async def test_tail_keeps_going_across_a_server_restart_without_gaps_or_repeats(
    server_a: ServerProcess, real_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**real_env, "PLOP_INSTANCE_ID": f"tail-{secrets.token_hex(3)}"}
    name = f"tail-restart-{secrets.token_hex(3)}"
    servers = [ServerProcess(name, env, port=free_port())]
    await servers[0].start()
    try:
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(PlopClient(server_a.http_url))
            alice_name, bob_name = unique_name("alice"), unique_name("bob")
            await alice.sign_up(alice_name, PASSWORD)
            async with PlopClient(server_a.http_url) as bob:
                bob_id = (await bob.sign_up(bob_name, PASSWORD)).user.id
            room = await alice.create_direct_room(bob_id)
            # Bob logs in to the server that will be restarted, and follows from there.
            login = ("login", "--url", servers[0].http_url, "--password-stdin", bob_name)
            await succeeds(tmp_path, *login, stdin=PASSWORD)
            tail = await stack.enter_async_context(tailing(tmp_path, room.id, "--after-seq", "0"))

            async def send(prefix: str, count: int) -> list[int]:
                return [
                    (await alice.send_message(room.id, f"{prefix} {i}")).seq for i in range(count)
                ]

            sent = await send("before", 5)
            shown = await tail.lines(5)
            await servers[0].kill()
            sent += await send("while down", 5)
            servers.append(ServerProcess(name, env, port=servers[0].port))
            async with asyncio.TaskGroup() as group:
                group.create_task(servers[1].start())
                during = group.create_task(send("restarting", 5))
            sent += during.result()
            shown += await tail.lines(10, within=RESUME_TIMEOUT_SECONDS)
            sent += await send("after", 1)
            shown += [await tail.line()]
    finally:
        for server in servers:
            await server.stop()
    assert sent == list(range(1, 17))
    assert [int(line.split("\t")[0]) for line in shown] == sent
    assert shown[0] == f"1\t{alice_name}\tbefore 0"
    assert shown[5] == f"6\t{alice_name}\twhile down 0"


async def signed_up(config: Path, server: ServerProcess, prefix: str) -> tuple[str, str]:
    """Signs a fresh user up with ``plop signup``; their username and id."""
    username = unique_name(prefix)
    args = ("signup", "--url", server.http_url, "--password-stdin", username)
    await succeeds(config, *args, stdin=PASSWORD)
    return username, saved(config)["user_id"]


async def test_whoami_prints_the_saved_user_as_the_server_knows_them(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    username, user_id = await signed_up(tmp_path, embedded_server, "who")
    out = await succeeds(tmp_path, "whoami")
    assert out == f"{username}\t{user_id}\t{embedded_server.http_url}\n"


async def test_logout_ends_the_session_on_the_server_and_removes_the_credentials(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    username, _ = await signed_up(tmp_path, embedded_server, "leaving")
    token = saved(tmp_path)["token"]
    out = await succeeds(tmp_path, "logout")
    assert out == f"Logged out {username} from {embedded_server.http_url}.\n"
    assert not (tmp_path / "credentials.json").exists()
    async with PlopClient(embedded_server.http_url, token) as stale:
        try:
            await stale.me()
        except PlopClientError as error:
            assert error.code == "UNAUTHENTICATED"
        else:
            raise AssertionError("the token still works after plop logout")
    again = await plop(tmp_path, "whoami")
    assert again.code == 1 and "not logged in" in again.stderr


async def test_logout_of_a_session_that_already_ended_still_removes_the_file(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    await signed_up(tmp_path, embedded_server, "twice")
    async with PlopClient(embedded_server.http_url, saved(tmp_path)["token"]) as elsewhere:
        await elsewhere.log_out()
    await succeeds(tmp_path, "logout")
    assert not (tmp_path / "credentials.json").exists()


async def test_logout_keeps_the_credentials_when_the_server_cannot_be_reached(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    save_credentials(tmp_path, Credentials(url, "some-token", "someone", "u1"))
    ran = await plop(tmp_path, "logout")
    assert ran.code == 1 and f"cannot reach {url}: connection refused" in ran.stderr, ran.stderr
    assert saved(tmp_path)["token"] == "some-token"


async def test_search_finds_a_user_whose_id_opens_a_direct_room(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    _, (bob, bob_id) = await asyncio.gather(
        signed_up(alice_config, embedded_server, "alice"),
        signed_up(bob_config, embedded_server, "bob"),
    )
    found = (await succeeds(alice_config, "search", bob.upper())).splitlines()
    assert found == [f"{bob_id}\t{bob}\t{bob}"]
    room = (await succeeds(alice_config, "direct", found[0].split("\t")[0])).strip()
    assert (await succeeds(bob_config, "rooms")).startswith(f"{room}\tDIRECT\t")

    nobody = await plop(alice_config, "search", f"nobody-{secrets.token_hex(4)}")
    assert (nobody.code, nobody.stdout) == (0, "") and "no users match" in nobody.stderr


async def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    out = await succeeds(tmp_path, "--version")
    assert out == f"plop, version {importlib.metadata.version('plop')}\n"


async def test_a_server_that_cannot_be_reached_is_named_in_the_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    ran = await plop(tmp_path, "login", "--url", url, "--password-stdin", "someone", stdin=PASSWORD)
    assert ran.code == 1
    assert ran.stderr.strip() == f"Error: cannot reach {url}: connection refused"


def test_credentials_at_the_old_location_are_moved_to_the_new_one(tmp_path: Path) -> None:
    legacy, current = tmp_path / "xdg" / "plop", tmp_path / "app" / "plop"
    credentials = Credentials("http://127.0.0.1:8000/graphql", "t0ken", "alice", "u1")
    save_credentials(legacy, credentials)
    moved = migrate_credentials(legacy, current)
    assert moved is not None and moved.target == current / "credentials.json"
    assert saved(current)["token"] == "t0ken" and mode(current / "credentials.json") == 0o600
    assert not legacy.exists()
    # Once moved, or when the new place has its own, nothing moves again.
    save_credentials(legacy, Credentials("http://other/graphql", "old", "bob", "u2"))
    assert migrate_credentials(legacy, current) is None
    assert saved(current)["token"] == "t0ken" and saved(legacy)["token"] == "old"


async def test_tail_shows_edits_deletes_and_typing_made_with_plop_edit_and_delete(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    url = embedded_server.http_url
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    alice, bob = unique_name("alice"), unique_name("bob")
    await both_sign_up(url, (alice_config, alice), (bob_config, bob))
    room = (await succeeds(alice_config, "direct", saved(bob_config)["user_id"])).strip()
    seq, message_id = (await succeeds(alice_config, "send", room, "helo", "--show-id")).split()
    assert seq == "1"

    async with settled(embedded_server):
        before = await active_subscriptions(embedded_server)
        async with tailing(bob_config, room, "--after-seq", "0") as tail:
            assert await tail.line() == f"1\t{alice}\thelo"
            # Messages and activity: both subscriptions are live before anything changes.
            await wait_active_subscriptions(embedded_server, before + 2)
            assert (await succeeds(alice_config, "edit", message_id, "hello")).strip() == "1"
            assert await tail.line() == f"1\t{alice}\thello (edited)"
            async with PlopClient(url, saved(alice_config)["token"]) as typer:
                await typer.set_typing(room)
            assert await tail.line() == f"{alice} is typing…"
            assert (await succeeds(alice_config, "delete", message_id)).strip() == "1"
            assert await tail.line() == f"1\t{alice}\t(deleted)"
        async with tailing(bob_config, room, "--after-seq", "0") as tail:
            assert await tail.line() == f"1\t{alice}\t(deleted)"
    refused = await plop(bob_config, "edit", message_id, "mine now")
    assert refused.code == 1 and "FORBIDDEN" in refused.stderr


async def test_group_rename_remove_and_role_run_a_group_by_its_roles(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    configs = [tmp_path / name for name in ("owner", "admin", "member")]
    (owner, owner_id), (admin, admin_id), (member, member_id) = await asyncio.gather(
        *(signed_up(config, embedded_server, config.name) for config in configs)
    )
    owner_config, admin_config, member_config = configs
    # Creating is still `plop group TITLE [USER_ID]...`, options anywhere.
    url = embedded_server.http_url
    room = await succeeds(owner_config, "group", "--url", url, "Team", admin_id, member_id)
    room = room.strip()
    for config in (admin_config, member_config):  # strangers to the owner: invited first
        (invitation,) = (await succeeds(config, "invitations")).splitlines()
        await succeeds(config, "invitations", "accept", invitation.split("\t")[0])
    assert (await succeeds(owner_config, "group", "rename", room, "Crew")).strip() == "Crew"
    assert f"{room}\tGROUP\tCrew\t" in await succeeds(member_config, "rooms")
    made_admin = await succeeds(owner_config, "group", "role", room, admin_id, "admin")
    assert made_admin.splitlines() == [
        f"{owner_id}\t{owner}\tOWNER",
        f"{admin_id}\t{admin}\tADMIN",
        f"{member_id}\t{member}\tMEMBER",
    ]

    for config, args in (
        (member_config, ("remove", room, admin_id)),
        (member_config, ("rename", room, "Mine")),
        (admin_config, ("remove", room, owner_id)),
        (admin_config, ("role", room, member_id, "ADMIN")),
    ):
        refused = await plop(config, "group", *args)
        assert refused.code == 1 and "FORBIDDEN" in refused.stderr, (args, refused.stderr)
    bad_role = await plop(owner_config, "group", "role", room, member_id, "KING")
    assert bad_role.code == 2 and "KING" in bad_role.stderr

    left = await succeeds(admin_config, "group", "remove", room, member_id)
    assert left.splitlines() == [f"{owner_id}\t{owner}\tOWNER", f"{admin_id}\t{admin}\tADMIN"]
    gone = await plop(member_config, "send", room, "still here?")
    assert gone.code == 1 and "FORBIDDEN" in gone.stderr
    handed = await succeeds(owner_config, "group", "role", room, admin_id, "OWNER")
    assert handed.splitlines() == [f"{owner_id}\t{owner}\tADMIN", f"{admin_id}\t{admin}\tOWNER"]


NEW_PASSWORD = "a brand new horse"


async def logged_in_again(config: Path, server: ServerProcess, username: str) -> None:
    """``plop login`` as an existing user, into another config dir."""
    args = ("login", "--url", server.http_url, "--password-stdin", username)
    await succeeds(config, *args, stdin=PASSWORD)


async def test_sessions_lists_them_and_end_session_ends_another(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    laptop, phone, stranger = tmp_path / "laptop", tmp_path / "phone", tmp_path / "stranger"
    username, _ = await signed_up(laptop, embedded_server, "sessions")
    await logged_in_again(phone, embedded_server, username)
    await signed_up(stranger, embedded_server, "stranger")

    lines = [line.split("\t") for line in (await succeeds(laptop, "sessions")).splitlines()]
    assert len(lines) == 2 and all(len(line) == 5 for line in lines), lines
    assert [line[3] for line in lines] == ["-", "current"]  # the phone's is the newer
    phone_id, laptop_id = lines[0][0], lines[1][0]
    assert phone_id not in (saved(phone)["token"], saved(laptop)["token"])

    other = await plop(stranger, "end-session", phone_id)
    assert other.code == 1 and "NOT_FOUND" in other.stderr, other.stderr
    out = await succeeds(laptop, "end-session", phone_id)
    assert out == f"Ended session {phone_id}.\n"
    ended = await plop(phone, "whoami")
    assert ended.code == 1 and "UNAUTHENTICATED" in ended.stderr, ended.stderr
    assert [line.split("\t")[0] for line in (await succeeds(laptop, "sessions")).splitlines()] == [
        laptop_id
    ]
    # Its own session: this terminal is logged out.
    out = await succeeds(laptop, "end-session", laptop_id)
    assert out == f"Ended session {laptop_id} (this one: logged out).\n"
    assert not (laptop / "credentials.json").exists()


async def test_passwd_changes_the_password_and_ends_the_other_sessions(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    username, user_id = await signed_up(laptop, embedded_server, "passwd")
    await logged_in_again(phone, embedded_server, username)

    wrong = await plop(laptop, "passwd", "--password-stdin", stdin=f"not it\n{NEW_PASSWORD}\n")
    assert wrong.code == 1 and "FORBIDDEN" in wrong.stderr, wrong.stderr
    short = await plop(laptop, "passwd", "--password-stdin", stdin=f"{PASSWORD}\nshort\n")
    assert short.code == 1 and "BAD_USER_INPUT" in short.stderr, short.stderr
    await succeeds(phone, "whoami")  # nothing changed yet

    out = await succeeds(
        laptop, "passwd", "--password-stdin", stdin=f"{PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert out == "Password changed; your other sessions have ended.\n"
    assert (await plop(phone, "whoami")).code == 1
    assert user_id in await succeeds(laptop, "whoami")
    login = ("login", "--url", embedded_server.http_url, "--password-stdin", username)
    old = await plop(phone, *login, stdin=PASSWORD)
    assert old.code == 1 and "UNAUTHENTICATED" in old.stderr
    await succeeds(phone, *login, stdin=NEW_PASSWORD)


async def test_delete_account_asks_first_then_deletes_and_forgets_the_credentials(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    username, user_id = await signed_up(tmp_path, embedded_server, "goner")
    declined = await plop(tmp_path, "delete-account", stdin="n\n")
    assert declined.code == 1 and "Aborted" in declined.stderr, declined.stderr
    wrong = await plop(tmp_path, "delete-account", "--yes", "--password-stdin", stdin="not it\n")
    assert wrong.code == 1 and "FORBIDDEN" in wrong.stderr, wrong.stderr
    assert user_id in await succeeds(tmp_path, "whoami")

    # Confirmed at the prompt, the password typed at the next (read without echo).
    out = await succeeds(tmp_path, "delete-account", stdin=f"y\n{PASSWORD}\n")
    assert out.endswith(f"Deleted the account {username}.\n"), out
    assert not (tmp_path / "credentials.json").exists()
    url = embedded_server.http_url
    login = await plop(
        tmp_path, "login", "--url", url, "--password-stdin", username, stdin=PASSWORD
    )
    assert login.code == 1 and "UNAUTHENTICATED" in login.stderr
    again = await plop(
        tmp_path, "signup", "--url", url, "--password-stdin", username, stdin=PASSWORD
    )
    assert again.code == 1 and "CONFLICT" in again.stderr and "deleted account" in again.stderr


async def test_invitations_are_listed_accepted_and_declined_and_rooms_muted_from_the_terminal(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    url = embedded_server.http_url
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    alice, bob = unique_name("alice"), unique_name("bob")
    await both_sign_up(url, (alice_config, alice), (bob_config, bob))
    bob_id = saved(bob_config)["user_id"]
    # Not alice's friend: bob is invited, not added.
    room = (await succeeds(alice_config, "group", "Team", bob_id)).strip()
    other = (await succeeds(alice_config, "group", "Other", bob_id)).strip()
    listed = (await succeeds(bob_config, "invitations")).splitlines()
    assert [line.split("\t")[1:] for line in listed] == [
        [other, "Other", alice],
        [room, "Team", alice],
    ]
    ids = {line.split("\t")[1]: line.split("\t")[0] for line in listed}
    assert (await succeeds(bob_config, "invitations", "accept", ids[room])).strip() == room
    declined = await plop(bob_config, "invitations", "decline", ids[other])
    assert (declined.code, declined.stdout, declined.stderr) == (0, "", "declined\n")
    empty = await plop(bob_config, "invitations")
    assert (empty.code, empty.stdout, empty.stderr) == (0, "", "no invitations\n")
    again = await plop(bob_config, "invitations", "accept", ids[room])
    assert again.code == 1 and "NOT_FOUND" in again.stderr, again.stderr
    assert [line.split("\t")[0] for line in (await succeeds(bob_config, "rooms")).splitlines()] == [
        room
    ]

    assert (await succeeds(bob_config, "mute", room)).strip() == (
        "muted until 9999-12-31T00:00:00+00:00"
    )
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    muted = await succeeds(bob_config, "mute", room, "--until", tomorrow.isoformat())
    assert abs(datetime.fromisoformat(muted.split()[-1]) - tomorrow) < timedelta(milliseconds=1)
    past = await plop(bob_config, "mute", room, "--until", "2001-01-01T00:00")
    assert past.code == 1 and "BAD_USER_INPUT" in past.stderr, past.stderr
    garbage = await plop(bob_config, "mute", room, "--until", "soon")
    assert garbage.code == 2 and "is not a time" in garbage.stderr, garbage.stderr
    unmuted = await plop(bob_config, "unmute", room)
    assert (unmuted.code, unmuted.stderr) == (0, "unmuted\n")
    async with PlopClient(url, saved(bob_config)["token"]) as client:
        assert (await client.room(room)).muted_until is None
