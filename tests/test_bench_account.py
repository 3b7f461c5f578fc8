"""The account scenario in smoke mode, and the load's books of an events socket.

The scenario runs as users run it (``python -m bench account --smoke``): both layouts
measured side by side, every socket given every message of its rooms once and in
order, and the memory of a socket following many rooms. Timings are never asserted.
"""

from __future__ import annotations

import json
from typing import Any

from bench.account_layout import AccountLayout, rooms_of_user
from bench.account_wire import AccountMessage, read_event, subscribe_frame
from bench.load import Socket, Subscriber, Worker
from bench.targets import Account
from tests.test_bench import run_bench


def test_account_smoke_measures_both_layouts_and_their_books(tmp_path: Any) -> None:
    document = run_bench(tmp_path, "account")
    parameters = document["parameters"]
    sockets, per_follower = parameters["sockets"], parameters["rooms_per_follower"]
    rows = document["results"]["rows"]
    assert [(row["target"], row["stream"]) for row in rows] == [
        ("Plop (embedded)", "account"),
        ("Plop (embedded)", "rooms"),
    ]
    for row in rows:
        assert row["opened"] == row["pairs"] == sockets * per_follower
        (per_room,) = row["sockets_per_room"]  # every room reaches as many sockets
        assert per_room * parameters["rooms"] == row["pairs"]
        assert row["failed_sockets"] == row["send_errors"] == row["seq_gaps"] == 0
        for phase in ("warm_up", "burst", "paced"):
            figures = row[phase]
            assert figures["deliveries"] == figures["expected_deliveries"] > 0
            assert figures["lost"] == figures["duplicates"] == figures["reordered"] == 0
            assert figures["errors"] == 0
            assert figures["other_events"] == {}
    # One events subscription per socket against one messageAdded per room.
    assert [row["subscriptions"] for row in rows] == [sockets, sockets * per_follower]
    account = rows[0]
    assert account["burst"]["ratio_deliveries_per_second"] is not None
    assert account["paced"]["ratio_p99"] is not None
    (memory,) = document["results"]["memory"]
    assert memory["followed_rooms"] == parameters["followed_rooms"]
    assert [kind["followed_rooms"] for kind in memory["kinds"]] == [
        0,
        1,
        1,
        memory["followed_rooms"],
    ]
    per_kind = parameters["memory_sockets_per_kind"]
    # An eighth as many sockets of the account in many rooms.
    assert [kind["sockets"] for kind in memory["kinds"]] == [per_kind] * 3 + [per_kind // 8]
    verify = memory["verify"]
    assert verify["deliveries"] == verify["expected_deliveries"] > 0
    assert verify["lost"] == verify["duplicates"] == verify["errors"] == 0
    assert document["checks"]["every_message_once_in_order"] is True


def test_rooms_of_users_are_distinct_and_even() -> None:
    rooms, per_user, users = 200, 10, 200
    holders = [0] * rooms
    for user in range(users):
        own = rooms_of_user(user, rooms, per_user)
        assert len(set(own)) == per_user
        for room in own:
            holders[room] += 1
    assert set(holders) == {users * per_user // rooms}
    layout = AccountLayout(
        Account("s", "sender"),
        [Account(f"t{user}", f"u{user}") for user in range(2)],
        ["a", "b", "c"],
        [["a", "b"], ["c"]],
        [],
    )
    plans = layout.plans(3, {"a": 1, "b": 2, "c": 3})
    assert [(plan.token, plan.room, plan.after_seq) for plan in plans] == [
        ("t0", "a", 1),
        ("t0", "b", 2),
        ("t1", "c", 3),
        ("t0", "a", 1),
        ("t0", "b", 2),
    ]
    assert layout.sockets_in(3) == {"a": 2, "b": 2, "c": 1}


def _event(room: str, seq: int, kind: str = "MessageAdded") -> dict[str, Any]:
    message = {"roomId": room, "seq": seq, "text": "1.0 text"}
    payload = {"__typename": kind, "message": message} if kind == "MessageAdded" else {}
    return {"events": {"token": "t", "payload": {"__typename": kind, **payload}}}


def test_an_events_socket_keeps_books_per_room_and_flags_foreign_rooms() -> None:
    frame = json.loads(subscribe_frame())
    assert frame["type"] == "subscribe" and frame["payload"]["variables"] == {"since": None}
    assert read_event(_event("r", 3)) == AccountMessage("r", 3, "1.0 text")
    assert read_event(_event("r", 3, "RoomJoined")) == "RoomJoined"
    refused = read_event({"events": None})
    assert isinstance(refused, str) and refused.startswith("not an account event")

    worker = Worker()
    books = [Subscriber("a", base=5), Subscriber("b", base=0)]
    for sub in books:
        sub.open = True
    worker.subscribers += books
    socket = Socket(worker, "ws://unused", "token", books, stream="account")
    for room, seq in (("a", 6), ("b", 1), ("a", 6), ("b", 3), ("b", 2), ("a", 4), ("x", 1)):
        socket._deliver_account(_event(room, seq), 2.0, 10)
    socket._deliver_account(_event("a", 7, "TypingEvent"), 2.0, 10)
    report = worker._round_report({"a": 7, "b": 3})
    assert report["deliveries"] == 4  # a6, b1, b3, b2
    assert report["duplicates_total"] == 1  # a6 twice
    assert report["reordered_total"] == 1  # b2 after b3
    assert report["lost"] == 1  # a7 never came
    # a4 is from before the subscription, x is a room the socket does not follow.
    assert report["error_count"] == 2
    assert report["other_events"] == {"TypingEvent": 1}
