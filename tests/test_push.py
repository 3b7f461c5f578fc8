"""Push notifications to offline members: once per device, through FCM HTTP v1 and
signed webhooks, with retries, dead-token removal and a shared worker group.

Two server instances run the push worker in one consumer group against the real
services; a local stand-in plays FCM and a webhook receiver (tests/support).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from push.signing import signature, verify
from tests.support.chat import (
    MARK_READ,
    REGISTER_DEVICE,
    UNREGISTER_DEVICE,
    as_user,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    TRANSPORT_WS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    ws_session,
)
from tests.support.push_receiver import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_SECRET,
    PushReceiver,
    readme_signature,
    running_push_receiver,
)
from tests.support.server import PLOP, ServerProcess, free_port

EDIT_MESSAGE = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { seq } }"
DELETE_MESSAGE = "mutation($m: ID!) { deleteMessage(messageId: $m) { seq } }"
SET_TYPING = "mutation($r: ID!, $t: Boolean!) { setTyping(roomId: $r, typing: $t) }"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("push")) as running:
        yield running


@pytest.fixture(scope="module")
def push_env(real_env: dict[str, str], receiver: PushReceiver) -> dict[str, str]:
    return {
        **real_env,
        "PLOP_PUSH_FCM_SERVICE_ACCOUNT_FILE": str(receiver.service_account_file),
        "PLOP_PUSH_FCM_BASE_URL": receiver.base_url,
        "PLOP_PUSH_WEBHOOK_URL": f"{receiver.base_url}/webhook",
        "PLOP_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # Its own group, new: it starts at the newest events, not at the backlog left
        # since the run's last push worker (tests/support/push_receiver.py).
        "PLOP_PUSH_GROUP": f"push-tests-{uuid.uuid4().hex[:8]}.push",
        "PLOP_PUSH_BACKOFF_BASE_SECONDS": "0.2",
        "PLOP_PUSH_BACKOFF_MAX_SECONDS": "1",
        "PLOP_PUSH_MAX_ATTEMPTS": "5",
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pushers(push_env: dict[str, str]) -> AsyncIterator[list[ServerProcess]]:
    """Two instances, each running the push worker in the shared group."""
    servers = [
        ServerProcess(
            f"push-{name}", {**push_env, "PLOP_INSTANCE_ID": f"push-{name}"}, port=free_port()
        )
        for name in "12"
    ]
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


# What the worker waits before a retry when the provider's answer says Retry-After: 1.
RETRY_AFTER_SECONDS = 1.0
# asyncio may wake a timer up to its clock resolution early.
TIMER_SLACK_SECONDS = 0.01


async def register(server: ServerProcess, account: Account, platform: str, token: str) -> str:
    """Registers a device; returns its id."""
    data = await as_user(server, account, REGISTER_DEVICE, p=platform, t=token)
    device_id: str = data["registerPushDevice"]["id"]
    return device_id


def token(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


async def test_offline_members_get_one_push_per_device_and_no_one_else_does(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    first, second = pushers
    sender, offline, online = [await sign_up(first) for _ in range(3)]
    phone, laptop, senders_phone, online_phone = (token(n) for n in ("phone", "hook", "s", "on"))
    await register(first, offline, "FCM", phone)
    await register(second, offline, "WEBHOOK", laptop)
    await register(first, sender, "FCM", senders_phone)
    await register(first, online, "FCM", online_phone)
    room_id = await group_room(first, sender, [offline, online], title="Team")
    async with ws_session(second, TRANSPORT_WS, online.token):  # online has a live socket
        sent = await send(first, sender, room_id, "x" * 300)
        pushes = await receiver.wait_for(2, phone, laptop)
        # A second message: its pushes come after every push of the first one.
        await send(second, sender, room_id, "again")
        await receiver.wait_for(4, phone, laptop)
    assert sorted(p.platform for p in pushes) == ["FCM", "WEBHOOK"]
    for push in pushes:
        assert push.title == f"{sender.display_name} (@{sender.username}) in Team"
        assert push.body == "x" * 200
        assert push.data == {"roomId": room_id, "seq": "1", "messageId": sent["id"]}
    assert len(receiver.for_token(phone)) == len(receiver.for_token(laptop)) == 2
    assert receiver.for_token(senders_phone) == [] and receiver.for_token(online_phone) == []


async def test_edits_deletes_typing_and_receipts_push_nothing(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    first, second = pushers
    sender, offline = await sign_up(first), await sign_up(first)
    phone = token("activity")
    await register(first, offline, "FCM", phone)
    room_id = await direct_room(first, sender, offline)
    sent = await send(first, sender, room_id, "first")
    await receiver.wait_for(1, phone)
    await as_user(first, sender, EDIT_MESSAGE, m=sent["id"], t="first, edited")
    await as_user(second, sender, SET_TYPING, r=room_id, t=True)
    await as_user(first, sender, MARK_READ, r=room_id, s=1)
    await as_user(second, sender, DELETE_MESSAGE, m=sent["id"])
    # A later message is pushed after all of them (one room, one partition, in order).
    await send(second, sender, room_id, "second")
    pushes = await receiver.wait_for(2, phone)
    assert [push.data["seq"] for push in pushes] == ["1", "2"]


async def test_direct_room_push_is_titled_with_the_senders_name_and_username(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    sender = await sign_up(pushers[0], display_name="Ann Sender")
    offline = await sign_up(pushers[0])
    device = token("direct")
    await register(pushers[0], offline, "WEBHOOK", device)
    room_id = await direct_room(pushers[0], sender, offline)
    await send(pushers[1], sender, room_id, "hello")
    (push,) = await receiver.wait_for(1, device)
    assert (push.title, push.body) == (f"Ann Sender (@{sender.username})", "hello")


@pytest.mark.parametrize("platform", ["FCM", "WEBHOOK"])
async def test_provider_503_and_429_then_200_delivers_once_after_backoff(
    pushers: list[ServerProcess], receiver: PushReceiver, platform: str
) -> None:
    sender, offline = await sign_up(pushers[0]), await sign_up(pushers[0])
    device = token("flaky")
    # The jittered backoff may be as short as it likes; Retry-After sets a floor.
    retry_after = {"Retry-After": f"{RETRY_AFTER_SECONDS:g}"}
    receiver.script(device, (503, {}, retry_after), (429, {}, retry_after))
    await register(pushers[0], offline, platform, device)
    room_id = await direct_room(pushers[0], sender, offline)
    await send(pushers[0], sender, room_id, "eventually")
    await receiver.wait_for(1, device)
    assert receiver.attempts[device] == 3
    times = receiver.attempt_times[device]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= RETRY_AFTER_SECONDS - TIMER_SLACK_SECONDS for gap in gaps), (
        f"retried before Retry-After: {gaps}"
    )
    await send(pushers[0], sender, room_id, "sync")
    await receiver.wait_for(2, device)
    assert len(receiver.for_token(device)) == 2  # the first one was delivered once


@pytest.mark.parametrize(
    ("platform", "answer"),
    [
        (
            "FCM",
            (
                404,
                {
                    "error": {
                        "code": 404,
                        "status": "NOT_FOUND",
                        "details": [{"errorCode": "UNREGISTERED"}],
                    }
                },
            ),
        ),
        (
            "FCM",
            (
                400,
                {
                    "error": {
                        "code": 400,
                        "status": "INVALID_ARGUMENT",
                        "details": [{"errorCode": "UNREGISTERED"}],
                    }
                },
            ),
        ),
        ("WEBHOOK", (410, {})),
    ],
)
async def test_dead_token_removes_the_device(
    pushers: list[ServerProcess],
    receiver: PushReceiver,
    platform: str,
    answer: tuple[int, dict[str, object]],
) -> None:
    sender, offline = await sign_up(pushers[0]), await sign_up(pushers[0])
    dead, alive = token("dead"), token("alive")
    receiver.script(dead, answer)
    await register(pushers[0], offline, platform, dead)
    await register(pushers[0], offline, "WEBHOOK", alive)
    room_id = await direct_room(pushers[0], sender, offline)
    await send(pushers[0], sender, room_id, "one")
    await receiver.wait_for(1, alive)
    await send(pushers[0], sender, room_id, "two")
    await receiver.wait_for(2, alive)
    assert receiver.attempts[dead] == 1  # removed after the first answer: never tried again
    removed = await as_user(pushers[0], offline, UNREGISTER_DEVICE, t=dead)
    assert removed["unregisterPushDevice"] is False


async def test_killed_worker_loses_no_push_and_repeats_none(
    pushers: list[ServerProcess], receiver: PushReceiver, push_env: dict[str, str]
) -> None:
    first, second = pushers
    sender = await sign_up(first)
    # Rooms spread over the partitions, so the killed member owned some of them.
    targets = [await sign_up(first) for _ in range(6)]
    devices = [token(f"kill{i}") for i in range(6)]
    rooms = []
    for target, device in zip(targets, devices, strict=True):
        await register(first, target, "WEBHOOK", device)
        rooms.append(await direct_room(first, sender, target))
    rounds = 6

    async def keep_sending() -> None:
        for round_number in range(rounds):
            for room_id in rooms:
                await send(first, sender, room_id, f"round {round_number}")

    sending = asyncio.create_task(keep_sending())
    await receiver.wait_for(len(rooms) * 2, *devices)  # mid-stream
    await second.kill()
    await sending
    restarted = ServerProcess(
        "push-2-again", {**push_env, "PLOP_INSTANCE_ID": "push-2b"}, port=second.port
    )
    await restarted.start()
    pushers[1] = restarted
    for room_id in rooms:
        await send(first, sender, room_id, "after the restart")
    expected = sorted((room, str(seq)) for room in rooms for seq in range(1, rounds + 2))
    pushes = await receiver.wait_for_ids(len(expected), *devices, within=90)
    # No push lost: every message reached its offline member's device.
    assert sorted({(p.data["roomId"], p.data["seq"]) for p in pushes}) == expected
    # None twice: a repeat can only be a push the killed worker had in flight, and it
    # carries the same push id, so the device replaces rather than shows it again.
    shown = {p.push_id for p in pushes}
    assert len(shown) == len(expected)
    # A repeat may still be on its way when the last distinct id arrived: a last
    # message per room sweeps them, since each room's events are pushed in order.
    for room_id in rooms:
        await send(first, sender, room_id, "sweep")
    swept = await receiver.wait_for_ids(len(expected) + len(rooms), *devices, within=60)
    counted = [p for p in swept if p.data["seq"] != str(rounds + 2)]
    assert {p.push_id for p in counted} == shown
    assert len(counted) - len(shown) <= 1, "more than the in-flight push was repeated"


async def test_device_rules(pushers: list[ServerProcess]) -> None:
    server = pushers[0]
    alice, bob = await sign_up(server), await sign_up(server)
    shared = token("shared")
    await register(server, alice, "FCM", shared)
    offset = server.log_size()
    await register(server, bob, "FCM", shared)  # the token moves to bob, and it is logged
    assert "push token moved to another user" in server.log_since(offset)
    assert (await as_user(server, alice, UNREGISTER_DEVICE, t=shared))[
        "unregisterPushDevice"
    ] is False
    assert (await as_user(server, bob, UNREGISTER_DEVICE, t=shared))["unregisterPushDevice"] is True
    owned = [token(f"d{i}") for i in range(11)]
    for device in owned:
        await register(server, alice, "WEBHOOK", device)
    # At most ten: the oldest went.
    assert (await as_user(server, alice, UNREGISTER_DEVICE, t=owned[0]))[
        "unregisterPushDevice"
    ] is False
    assert (await as_user(server, alice, UNREGISTER_DEVICE, t=owned[1]))[
        "unregisterPushDevice"
    ] is True
    async with http_session(server, alice.token) as session:
        assert await error_code(session, REGISTER_DEVICE, p="FCM", t="x" * 4097) == "BAD_USER_INPUT"
        assert await error_code(session, REGISTER_DEVICE, p="FCM", t="  ") == "BAD_USER_INPUT"


async def test_log_out_removes_the_devices_that_session_registered(
    pushers: list[ServerProcess],
) -> None:
    """A shared phone: the previous user's logOut stops their pushes to it; the
    devices of the user's other sessions stay."""
    server = pushers[0]
    alice = await sign_up(server)
    async with http_session(server) as session:
        data = await call(
            session,
            "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }",
            u=alice.username,
            p="correct horse battery",
        )
    laptop = Account(data["logIn"]["token"], alice.id, alice.username, alice.display_name)
    phone_token, laptop_token = token("phone"), token("laptop")
    await register(server, alice, "WEBHOOK", phone_token)
    await register(server, laptop, "WEBHOOK", laptop_token)
    assert (await as_user(server, alice, "mutation { logOut }"))["logOut"] is True
    assert (await as_user(server, laptop, UNREGISTER_DEVICE, t=phone_token))[
        "unregisterPushDevice"
    ] is False
    assert (await as_user(server, laptop, UNREGISTER_DEVICE, t=laptop_token))[
        "unregisterPushDevice"
    ] is True


async def test_push_platform_not_configured_is_bad_user_input(
    embedded_server: ServerProcess,
) -> None:
    viewer = await sign_up(embedded_server)
    async with http_session(embedded_server, viewer.token) as session:
        assert await error_code(session, REGISTER_DEVICE, p="FCM", t="t") == "BAD_USER_INPUT"


async def test_webhook_is_signed_and_shaped_as_the_readme_documents(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    sender, offline = await sign_up(pushers[0]), await sign_up(pushers[0])
    device = token("documented")
    device_id = await register(pushers[0], offline, "WEBHOOK", device)
    room_id = await direct_room(pushers[0], sender, offline)
    sent = await send(pushers[0], sender, room_id, "as documented")
    (push,) = await receiver.wait_for(1, device)
    headers = push.headers  # as received, names in lower case: Plop-Timestamp, ...
    timestamp = headers["plop-timestamp"]
    assert re.fullmatch(r"[0-9]+", timestamp) and abs(time.time() - int(timestamp)) < 60
    mac = hmac.new(
        WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + push.raw_body, hashlib.sha256
    )
    assert hmac.compare_digest(headers["plop-signature"], "v1=" + mac.hexdigest())
    assert headers["plop-push-id"] == f"{room_id}:1:{device_id}"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(push.raw_body) == {
        "deviceToken": device,
        "title": f"{sender.display_name} (@{sender.username})",
        "body": "as documented",
        "data": {"roomId": room_id, "seq": "1", "messageId": sent["id"]},
    }


async def test_fcm_push_carries_the_push_id_as_its_tag(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    sender, offline = await sign_up(pushers[0]), await sign_up(pushers[0])
    device = token("tagged")
    device_id = await register(pushers[0], offline, "FCM", device)
    room_id = await direct_room(pushers[0], sender, offline)
    await send(pushers[0], sender, room_id, "tagged")
    (push,) = await receiver.wait_for(1, device)
    assert push.push_id == f"{room_id}:1:{device_id}"


def test_signing_code_matches_the_documented_hmac() -> None:
    body, now = b'{"deviceToken":"t"}', int(time.time())
    expected = (
        "v1=" + hmac.new(WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, "sha256").hexdigest()
    )
    assert signature(WEBHOOK_SECRET, now, body) == expected
    assert readme_signature(WEBHOOK_SECRET, str(now), body) == expected


def test_webhook_signature_is_checked_not_just_present() -> None:
    body, now = b'{"deviceToken":"t"}', time.time()
    header = signature(WEBHOOK_SECRET, int(now), body)
    assert verify(WEBHOOK_SECRET, str(int(now)), header, body, now)
    assert not verify(WEBHOOK_SECRET, str(int(now)), header, body + b" ", now)  # body changed
    assert not verify("another-secret-0123456789", str(int(now)), header, body, now)
    assert not verify(WEBHOOK_SECRET, str(int(now) + 1), header, body, now)  # timestamp changed
    assert not verify(
        WEBHOOK_SECRET,
        str(int(now) - 600),
        signature(WEBHOOK_SECRET, int(now) - 600, body),
        body,
        now,
    )
    assert not verify(WEBHOOK_SECRET, "", header, body, now)


async def test_receiver_refuses_a_bad_signature(receiver: PushReceiver) -> None:
    body = b'{"deviceToken":"t","title":"x","body":"y","data":{}}'
    now = int(time.time())
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            f"{receiver.base_url}/webhook",
            content=body,
            headers={
                TIMESTAMP_HEADER: str(now),
                SIGNATURE_HEADER: readme_signature("wrong-secret-0123456789", str(now), body),
            },
        )
        genuine = await client.post(
            f"{receiver.base_url}/webhook",
            content=body,
            headers={
                TIMESTAMP_HEADER: str(now),
                SIGNATURE_HEADER: readme_signature(WEBHOOK_SECRET, str(now), body),
            },
        )
    assert forged.status_code == 401
    assert genuine.status_code == 200  # the control: the same request, signed right


async def test_push_worker_runs_on_its_own_and_stops_cleanly(push_env: dict[str, str]) -> None:
    worker = await asyncio.create_subprocess_exec(
        str(PLOP),
        "push-worker",
        env={**_environment_without_plop(), **push_env, "PLOP_INSTANCE_ID": "standalone"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert worker.stdout is not None
    async with asyncio.timeout(60):
        while b"push worker running" not in (line := await worker.stdout.readline()):
            assert line, "the push worker exited before it ran"
    worker.terminate()
    async with asyncio.timeout(30):
        await worker.communicate()
    assert worker.returncode == 0


async def test_push_worker_without_a_provider_refuses_to_start() -> None:
    worker = await asyncio.create_subprocess_exec(
        str(PLOP),
        "push-worker",
        env=_environment_without_plop(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        output, _ = await worker.communicate()
    assert worker.returncode != 0
    assert b"no push provider is configured" in output


def _environment_without_plop() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PLOP_")}


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        ("\u0663" * 10, "good"),  # Arabic-Indic digits: isdigit() takes them
        ("\u00b2", "good"),  # SUPERSCRIPT TWO: isdigit() takes it, int() refuses it
        ("9" * 5_000, "good"),  # int() refuses past 4,300 digits
        ("1e9", "good"),
        (" now", "good"),
        ("-1", "good"),
        ("soon", "good"),  # not a number
        ("", "good"),
        ("now", ""),
        ("now", "v1="),
        ("now", "v1=\u00e9\u00e9"),  # compare_digest refuses a str that is not ASCII
        ("now", "v1=\ud800"),
        ("now", "v2=" + "0" * 64),
        ("now", "good\x00"),
    ],
)
def test_webhook_signature_verify_is_false_for_any_malformed_header(
    timestamp: str, header: str
) -> None:
    body, now = b'{"deviceToken":"t"}', time.time()
    good = signature(WEBHOOK_SECRET, int(now), body)
    timestamp = timestamp.replace("now", str(int(now)))
    header = header.replace("good", good)
    assert verify(WEBHOOK_SECRET, timestamp, header, body, now) is False


async def test_huge_retry_after_is_capped_by_the_setting(receiver: PushReceiver) -> None:
    server = ServerProcess(
        "push-retry-after",
        {
            "PLOP_PUSH_WEBHOOK_URL": f"{receiver.base_url}/webhook",
            "PLOP_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PLOP_PUSH_RETRY_AFTER_MAX_SECONDS": "0.5",
            "PLOP_PUSH_BACKOFF_BASE_SECONDS": "0.05",
            "PLOP_PUSH_BACKOFF_MAX_SECONDS": "0.1",
        },
    )
    await server.start()
    try:
        sender, offline = await sign_up(server), await sign_up(server)
        device = token("patient")
        receiver.script(
            device,
            (429, {}, {"Retry-After": "86400"}),  # a day: uncapped, the push would wait it out
            (503, {}, {"Retry-After": "9" * 400}),  # too large for a float
            (503, {}, {"Retry-After": "\u00b2"}),  # not a number a float reads
        )
        await register(server, offline, "WEBHOOK", device)
        room_id = await direct_room(server, sender, offline)
        started = time.monotonic()
        await send(server, sender, room_id, "soon")
        await receiver.wait_for(1, device, within=20)
        assert receiver.attempts[device] == 4
        assert time.monotonic() - started >= 0.5  # the capped Retry-After was honoured
        assert "Traceback" not in server.log_tail(400)
    finally:
        await server.stop()


async def push_count(servers: list[ServerProcess], provider: str, result: str) -> float:
    """plop_push_total{provider, result} summed over the instances (either may push)."""
    total = 0.0
    pattern = re.compile(
        rf'^plop_push_total\{{(?=[^}}]*provider="{provider}")(?=[^}}]*result="{result}")'
        r"[^}]*\} (\S+)$",
        re.MULTILINE,
    )
    async with httpx.AsyncClient(timeout=5) as client:
        for server in servers:
            text = (await client.get(f"{server.base_url}/metrics")).text
            total += sum(float(value) for value in pattern.findall(text))
    return total


async def test_push_outcomes_are_counted_by_provider_and_result(
    pushers: list[ServerProcess], receiver: PushReceiver
) -> None:
    outcomes = (("webhook", "sent"), ("webhook", "dead_token"))
    before = {outcome: await push_count(pushers, *outcome) for outcome in outcomes}
    sender, offline = await sign_up(pushers[0]), await sign_up(pushers[0])
    alive, dead = token("counted"), token("counted-dead")
    receiver.script(dead, (410, {}))
    await register(pushers[0], offline, "WEBHOOK", alive)
    await register(pushers[0], offline, "WEBHOOK", dead)
    room_id = await direct_room(pushers[0], sender, offline)
    await send(pushers[0], sender, room_id, "counted")
    await receiver.wait_for(1, alive)

    async def grown() -> dict[tuple[str, str], float]:
        return {o: await push_count(pushers, *o) - before[o] for o in outcomes}

    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        # Polls other processes' /metrics: the count follows the provider's answer.
        while (counted := await grown()) != dict.fromkeys(outcomes, 1.0):
            assert all(value <= 1 for value in counted.values()), counted
            await asyncio.sleep(0.05)
