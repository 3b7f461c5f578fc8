"""An independent check of ``plop bench send``: sendMessage's rate and Plop's CPU per send.

It shares nothing with the bench's load, targets or accounting: it starts ``plop
serve`` itself, signs up one user per sender, gives each sender a group room of its
own, and runs C closed-loop senders, each on its own kept-alive HTTP/1.1 connection
written with asyncio streams, for a fixed time after a warm-up. The server's CPU is
read from ``/proc/<pid>/stat`` before and after that time; the services' (FerretDB,
PostgreSQL, Kafka, Redis) from their pid files' process trees when they run here.
With ``--profile FILE`` py-spy records the server during the measured time. The
round trips to Redis and to the database per send are read from the server's
``/metrics`` (``plop_backend_commands_total`` of sendMessage) over the same time.

    python -m bench.send_probe --backend real --concurrency 64 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SEND = (
    "mutation Send($roomId: ID!, $text: String!, $clientId: String) "
    "{ sendMessage(roomId: $roomId, text: $text, clientId: $clientId) { id seq } }"
)
SIGN_UP = (
    "mutation Up($username: String!, $password: String!) "
    "{ signUp(username: $username, password: $password) { token } }"
)
GROUP = "mutation G($title: String!) { createGroupRoom(title: $title, memberIds: []) { id } }"
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
# Every limit a closed loop of sends would trip: the probe measures the send, not them.
UNLIMITED = {
    "PLOP_SEND_MESSAGE_LIMIT": "1000000",
    "PLOP_CREATE_ROOM_LIMIT": "1000000",
    "PLOP_SIGN_UP_PER_ADDRESS_LIMIT": "1000000",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _tree(pid: int) -> list[int]:
    """The pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        each = pending.pop()
        found.append(each)
        pending.extend(children.get(each, []))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def _service_pids(services: Path) -> list[int]:
    pids: list[int] = []
    for pid_file in services.glob("**/*.pid"):
        try:
            pids += _tree(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(set(pids))


def _busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(each) for each in fields]
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    return (sum(values[:8]) - values[3] - values[4]) / TICKS


class Connection:
    """One kept-alive HTTP/1.1 connection, one POST at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, payload: dict[str, Any], token: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = (
            f"POST /graphql HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{auth}\r\n".encode()
            + body
        )
        # A connection the server closed while it waited (its keep-alive timeout) is
        # opened again once; a send carries a clientId, so a repeat stores nothing twice.
        for attempt in range(2):
            if self.streams is None:
                self.streams = await asyncio.open_connection(HOST, self.port)
            reader, writer = self.streams
            writer.write(request)
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            answer = json.loads(await reader.readexactly(length))
            if answer.get("errors"):
                raise RuntimeError(answer["errors"])
            return answer["data"]
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("plop serve exited")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.2)  # another process: nothing to await but its port
            continue
        writer.close()
        return
    raise RuntimeError("plop serve was not ready in 60 s")


def _round_trips(port: int) -> dict[str, float]:
    """sendMessage's round trips so far, by backend, from the server's /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("plop_backend_commands_total{") and 'field="sendMessage"' in line:
            backend = line.split('backend="', 1)[1].split('"', 1)[0]
            counts[backend] = counts.get(backend, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _server_env(backend: str, services: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLOP_")}
    env.update(UNLIMITED)
    if backend == "real":
        run = secrets.token_hex(4)
        env.update(
            {
                "PLOP_MONGO_URL": f"mongodb://127.0.0.1:27017/probe_{run}",
                "PLOP_BROKER_URL": "kafka://127.0.0.1:9092",
                "PLOP_REDIS_URL": "redis://127.0.0.1:6379/0",
                "PLOP_TOPIC_PREFIX": f"probe-{run}",
            }
        )
    env["PLOP_SERVICES_DIR"] = str(services)
    return env


async def _set_up(port: int, senders: int) -> list[tuple[str, str]]:
    """(token, room id) for each sender: a user and a group room of its own."""
    prefix = secrets.token_hex(3)
    connection = Connection(port)
    made = []
    try:
        for index in range(senders):
            variables = {"username": f"p{prefix}_{index}", "password": "probe password 1234"}
            token = (await connection.post({"query": SIGN_UP, "variables": variables}))["signUp"][
                "token"
            ]
            room = await connection.post(
                {"query": GROUP, "variables": {"title": f"probe {index}"}}, token
            )
            made.append((token, room["createGroupRoom"]["id"]))
    finally:
        connection.close()
    return made


async def _send_loop(
    port: int,
    token: str,
    room: str,
    warm_up: int,
    warm: asyncio.Queue[BaseException | None],
    go: asyncio.Event,
    until: list[float],
    counts: list[int],
) -> None:
    connection = Connection(port)
    try:
        try:
            for _ in range(warm_up):
                await connection.post(_send_body(room), token)
        except Exception as exc:
            warm.put_nowait(exc)  # the driver raises it rather than waiting for ever
            raise
        warm.put_nowait(None)
        await go.wait()
        while time.monotonic() < until[0]:
            await connection.post(_send_body(room), token)
            counts[1] += 1
    finally:
        connection.close()


def _send_body(room: str) -> dict[str, Any]:
    text = f"{time.time():.6f} " + "x" * 46
    return {
        "query": SEND,
        "variables": {"roomId": room, "text": text, "clientId": secrets.token_hex(8)},
    }


def _start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    services = Path(args.services_dir)
    port = _free_port()
    plop = Path(sys.executable).parent / "plop"
    server = _start(
        [str(plop), "serve", "--host", HOST, "--port", str(port)],
        _server_env(args.backend, services),
    )
    profiler: subprocess.Popen[bytes] | None = None
    try:
        await _wait_ready(port, server)
        made = await _set_up(port, args.concurrency)
        until: list[float] = []
        counts = [0, 0]  # unused, measured sends
        warm: asyncio.Queue[BaseException | None] = asyncio.Queue()
        go = asyncio.Event()
        loops = [
            asyncio.create_task(
                _send_loop(port, token, room, args.warm_up, warm, go, until, counts)
            )
            for token, room in made
        ]
        for _ in loops:
            if (failed := await warm.get()) is not None:
                raise failed
        service_pids = _service_pids(services) if args.backend == "real" else []
        if args.profile:
            profiler = _start(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--nonblocking",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    "speedscope",
                    "--output",
                    args.profile,
                ],
            )
        # What the server spends with nothing to do (its background work, the Kafka
        # consumer's polls): on a loaded machine it is a share of each send's CPU.
        idle_before, idle_started = _cpu_seconds([server.pid]), time.monotonic()
        await asyncio.sleep(args.idle_seconds)  # the measured time is the point here
        idle_share = (_cpu_seconds([server.pid]) - idle_before) / (time.monotonic() - idle_started)
        trips_before = await asyncio.to_thread(_round_trips, port)
        cpu_before = _cpu_seconds([server.pid])
        services_before = _cpu_seconds(service_pids)
        busy_before, started = _busy_seconds(), time.monotonic()
        until.append(started + args.seconds)
        go.set()
        await asyncio.gather(*loops)
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds([server.pid]) - cpu_before
        services_cpu = _cpu_seconds(service_pids) - services_before
        busy = _busy_seconds() - busy_before
        sent = counts[1]
        trips_after = await asyncio.to_thread(_round_trips, port)
        trips = {
            backend: round((trips_after[backend] - trips_before.get(backend, 0.0)) / sent, 2)
            for backend in sorted(trips_after)
        }
        if profiler is not None:
            profiler.wait(timeout=120)
        return {
            "backend": args.backend,
            "concurrency": args.concurrency,
            "sent": sent,
            "seconds": round(elapsed, 2),
            "per_second": round(sent / elapsed, 1),
            "plop_cpu_ms_per_send": round(cpu / sent * 1e3, 3),
            "plop_idle_cpu_share": round(idle_share, 3),
            "plop_cpu_ms_per_send_less_idle": round((cpu - idle_share * elapsed) / sent * 1e3, 3),
            "services_cpu_ms_per_send": round(services_cpu / sent * 1e3, 3)
            if service_pids
            else None,
            "round_trips_per_send": trips,
            "machine_busy_share": round(busy / (elapsed * (os.cpu_count() or 1)), 3),
            "load_average": os.getloadavg(),
        }
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _stopped(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # through probe's finally: the server is stopped too


def main() -> None:
    signal.signal(signal.SIGTERM, _stopped)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["real", "embedded"], default="real")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warm-up", type=int, default=5, dest="warm_up")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=5.0,
        dest="idle_seconds",
        help="the server's idle CPU is read over this time before the sends",
    )
    parser.add_argument("--profile", help="py-spy speedscope output of the measured time")
    parser.add_argument(
        "--services-dir",
        default=os.environ.get("PLOP_SERVICES_DIR", ".services"),
        help="where the real services keep their pid files",
    )
    sys.stdout.write(json.dumps(asyncio.run(probe(parser.parse_args()))) + "\n")


if __name__ == "__main__":
    main()
