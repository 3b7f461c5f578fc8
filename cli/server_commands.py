"""The server's commands: ``plop serve``, ``plop push-worker`` and ``plop bench``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

import click

from errors import ConfigError

if TYPE_CHECKING:
    from settings import Settings

# uvicorn, pydantic, the settings and the logging setup (which loads strawberry) are
# imported by the commands that use them: every other ``plop`` command (send, tail,
# login, ...) starts without them, in about two thirds of the CPU time.

# Of PLOP_SHUTDOWN_SECONDS, what uvicorn's wait for requests in flight may take.
UVICORN_STOP_SHARE = 0.25

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _logging(level: str, log_format: str) -> dict[str, Any]:
    """Installs the logging setup; a level logging does not know is a usage error."""
    from observability.logs import configure_logging

    try:
        return configure_logging(level, log_format)
    except ValueError as exc:
        raise click.ClickException(f"PLOP_LOG_LEVEL: {exc}") from exc


def _settings() -> Settings:
    """The settings from the environment; a bad value is one line, not a traceback."""
    from pydantic import ValidationError

    from settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PLOP_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc


def _checked_proxies(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    if value is not None:
        from transport.client_address import trusted_networks

        try:
            trusted_networks(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), context, parameter) from exc
    return value


@click.command(help="Serve the GraphQL API (GraphiQL at http://HOST:PORT/graphql).")
@click.option("--host", default=None, help="Interface to bind [default: PLOP_HOST or 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default: PLOP_PORT or 8000].")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level [default: PLOP_LOG_LEVEL or info].",
)
@click.option("--reload", is_flag=True, help="Development: restart when a source file changes.")
@click.option(
    "--forwarded-allow-ips",
    default=None,
    metavar="IPS",
    callback=_checked_proxies,
    help=(
        "Proxies (addresses or networks, comma-separated) whose X-Forwarded-For names "
        "the client [default: PLOP_FORWARDED_ALLOW_IPS, else none]."
    ),
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each a full instance (needs the real backends).",
)
def serve(
    host: str | None,
    port: int | None,
    log_level: str | None,
    reload: bool,
    forwarded_allow_ips: str | None,
    workers: int,
) -> None:
    import uvicorn
    from uvicorn.supervisors import ChangeReload, Multiprocess

    settings = _settings()
    if forwarded_allow_ips is not None:
        settings.forwarded_allow_ips = forwarded_allow_ips
        # A reloading server builds its settings from the environment, in a child.
        os.environ["PLOP_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    host = host or settings.host
    port = port if port is not None else settings.port
    # The address served, for the URLs Plop signs itself (PLOP_PUBLIC_URL unset).
    settings.host, settings.port = host, port
    if workers > 1 and reload:
        raise click.UsageError("--reload serves one process: leave out --workers")
    if workers > 1 and (embedded := settings.embedded_backends):
        raise click.ClickException(
            f"--workers {workers} needs the real backends: {', '.join(embedded)} "
            "point at memory://, an in-process stand-in that each worker would hold apart"
        )
    level = (log_level or settings.log_level).lower()
    log_config = _logging(level, settings.log_format)
    if settings.admin_port == port:
        raise click.UsageError(f"PLOP_ADMIN_PORT must differ from the public port {port}")
    base = f"http://{host}:{port}"
    logging.getLogger("plop").info(
        "serving GraphiQL at %s/graphql and the web page at %s/", base, base
    )
    listeners = [_listen(host, port)]
    if settings.admin_port is not None:
        # The same app on a second socket: observability.admin tells the two apart.
        listeners.append(_listen(settings.admin_host, settings.admin_port))
        admin = f"http://{settings.admin_host}:{settings.admin_port}"
        logging.getLogger("plop").info("serving /metrics and /readyz at %s only", admin)
    options: dict[str, Any] = {
        "ws_max_size": settings.max_websocket_message_bytes,
        "ws_per_message_deflate": settings.websocket_compression,
        "log_config": log_config,
        "log_level": level,
        # observability.logs.RequestLog writes one line per request, with its id.
        "access_log": False,
        "lifespan": "on",
        # X-Forwarded-For is Plop's to judge (PLOP_FORWARDED_ALLOW_IPS), not uvicorn's.
        "proxy_headers": False,
        # How long uvicorn's own stop waits for requests in flight; the app's drain
        # comes before it and the lifespan's shutdown after it (app.shutdown).
        "timeout_graceful_shutdown": settings.shutdown_seconds * UVICORN_STOP_SHARE,
    }
    if reload:
        # A reloading server imports the app anew in a child process, from the
        # environment's settings; --host, --port and --log-level still apply.
        config = uvicorn.Config(
            "main:create_app", factory=True, reload=True, host=host, port=port, **options
        )
        ChangeReload(config, target=uvicorn.Server(config).run, sockets=listeners).run()
        return
    if workers > 1:
        # Each worker imports the app by name and builds it from the environment; they
        # all accept on the sockets bound here. The parent passes SIGTERM on to each,
        # and each stops gracefully on its own.
        config = uvicorn.Config("main:create_worker_app", factory=True, workers=workers, **options)
        Multiprocess(config, sockets=listeners).run()
        return
    from app.collector import settle_collector
    from main import create_app

    app = create_app(settings)
    settle_collector()  # a connection storm must not wait on full collector passes
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=listeners)


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before any backend is opened, so that a
    port in use fails at once with one clear line instead of after a full start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


@click.command(
    name="push-worker",
    help=(
        "Run the push worker on its own, without HTTP: it joins the push consumer group "
        "the server instances share (set PLOP_PUSH_WORKER_ENABLED=false on the servers "
        "to leave pushing to workers like this one)."
    ),
)
def push_worker() -> None:
    settings = _settings()
    settings.push_worker_enabled = True
    if not (settings.push_fcm_service_account_file or settings.push_webhook_url):
        raise click.ClickException(
            "no push provider is configured: set PLOP_PUSH_FCM_SERVICE_ACCOUNT_FILE "
            "and/or PLOP_PUSH_WEBHOOK_URL"
        )
    _logging(settings.log_level, settings.log_format)
    from app.runtime import open_runtime

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)
        async with open_runtime(settings):
            logging.getLogger("plop.push_worker").info("push worker running")
            await stop.wait()

    try:
        asyncio.run(run())
    except ConfigError as exc:  # an unreachable backend too: one line, not a traceback
        raise click.ClickException(f"cannot start: {exc}") from exc


@click.command(
    "bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    help="Run a benchmark scenario (plop bench --help lists the scenarios and options).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    # Imported here: the benchmark pulls in matplotlib, which the other commands need
    # not load (nor let it write its caches under the user's home).
    try:
        from bench.cli import main as run_bench
    except ImportError as exc:
        raise click.ClickException(
            "plop bench needs the bench extra: pip install -e '.[bench]'"
        ) from exc
    raise SystemExit(run_bench(list(args)))


SERVER_COMMANDS = (serve, push_worker, bench)
