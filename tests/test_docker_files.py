"""The docker/ files agree with each other and with Plop: parsed, never run."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import yaml
from prometheus_client.metrics import MetricWrapperBase

from observability import metrics
from settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
PROMETHEUS_FILE = DOCKER / "prometheus.yml"
GRAFANA_DIR = DOCKER / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "plop.json"

BACKENDS = ("mongo", "kafka", "redis", "storage")
REPLICAS = ("plop-a", "plop-b")
APP_PORT = 8000
# The replicas' admin port (PLOP_ADMIN_PORT): /metrics and /readyz, never published.
ADMIN_PORT = 9100
# The settings that point a replica at each backend, and the URL scheme each must use.
BACKEND_URLS = {
    "PLOP_MONGO_URL": ("mongodb", "mongo"),
    "PLOP_BROKER_URL": ("kafka", "kafka"),
    "PLOP_REDIS_URL": ("redis", "redis"),
    "PLOP_STORAGE_URL": ("s3", "storage"),
}
DASHBOARD_METRICS = (
    metrics.OPERATIONS,
    metrics.OPERATION_SECONDS,
    metrics.OPEN_WEBSOCKETS,
    metrics.ACTIVE_SUBSCRIPTIONS,
    metrics.MESSAGES_SENT,
    metrics.DELIVERIES,
    metrics.PUSHES,
    metrics.RELAY_BACKLOG,
    metrics.KAFKA_CONSUMER_LAG,
    metrics.SOCKETS_REFUSED,
)
# Suffixes Prometheus adds to a histogram's or counter's family name in its series.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


# --- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return cast(dict[str, Any], data)


@cache
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def services() -> dict[str, dict[str, Any]]:
    found = compose().get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services mapping"
    return cast(dict[str, dict[str, Any]], found)


def plop_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if name.startswith("plop-")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as KEY=VALUE items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    assert isinstance(env, dict)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency of a service and the condition it waits for."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {str(name): "service_started" for name in deps}
    return {
        str(name): str((spec or {}).get("condition", "service_started"))
        for name, spec in deps.items()
    }


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of every port a service publishes."""
    published = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published.append(
                (
                    str(entry.get("host_ip", "")),
                    str(entry.get("published", "")),
                    str(entry.get("target", "")),
                )
            )
            continue
        parts = str(entry).split(":")
        container = parts[-1].split("/")[0]
        if len(parts) == 3:
            published.append((parts[0], parts[1], container))
        elif len(parts) == 2:
            published.append(("", parts[0], container))
        else:
            published.append(("", container, container))
    return published


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of every bind mount (relative to docker/)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (DOCKER / source).resolve()
    return mounts


@cache
def dockerfile_instructions() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    return tuple(instructions)


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the stage that becomes the image."""
    instructions = list(dockerfile_instructions())
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def command_words(args: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT in exec (JSON) or shell form."""
    if args.startswith("["):
        words = json.loads(args)
        assert isinstance(words, list)
        return [str(word) for word in words]
    return shlex.split(args)


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text())
    assert isinstance(data, dict)
    return cast(dict[str, Any], data)


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard().get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels folded into a row
    return panels


def dashboard_queries() -> list[str]:
    return [
        str(target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def series_names(metric: MetricWrapperBase) -> set[str]:
    """The names a metric's series carry in Prometheus."""
    names = set()
    for family in metric.describe():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


# --- docker-compose.yml ---------------------------------------------------------------


def test_compose_runs_backends_replicas_and_monitoring() -> None:
    expected = {*BACKENDS, *REPLICAS, "prometheus", "grafana"}
    missing = expected - services().keys()
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"
    assert sorted(plop_services()) == sorted(REPLICAS)


def pinned_kafka_version() -> str:
    """The Kafka version scripts/services.sh installs (scripts/kafka/pom.xml)."""
    root = ElementTree.parse(REPO / "scripts" / "kafka" / "pom.xml").getroot()
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = root.findtext("m:properties/m:kafka.version", namespaces=namespace)
    assert version, "scripts/kafka/pom.xml pins no kafka.version"
    return version


def pinned_ferretdb_version() -> str:
    """The FerretDB version scripts/services.sh builds (scripts/ferretdb/go.mod)."""
    go_mod = (REPO / "scripts" / "ferretdb" / "go.mod").read_text()
    found = re.search(r"^\s*github\.com/FerretDB/FerretDB v(\d+\.\d+\.\d+)\b", go_mod, re.M)
    assert found, "scripts/ferretdb/go.mod pins no FerretDB version"
    return found.group(1)


def image_tag(service: str) -> tuple[str, str]:
    """(repository, tag) of a compose service's image."""
    image = str(services()[service].get("image", ""))
    repository, _, tag = image.rpartition(":")
    return repository, tag


def test_backend_images_are_the_versions_the_local_services_run() -> None:
    services_doc = (REPO / "docs" / "services.md").read_text()
    kafka, ferretdb = pinned_kafka_version(), pinned_ferretdb_version()
    assert image_tag("kafka") == ("apache/kafka", kafka)
    assert image_tag("mongo") == ("ghcr.io/ferretdb/ferretdb", ferretdb)
    assert f"## Kafka {kafka}" in services_doc and f"## FerretDB {ferretdb}" in services_doc

    redis_repository, redis_tag = image_tag("redis")
    redis_version = re.search(r"`redis-server` (\d+\.\d+\.\d+)", services_doc)
    assert redis_version, "docs/services.md names no Redis version"
    assert (redis_repository, redis_tag.split("-")[0]) == ("redis", redis_version.group(1))

    postgres_repository, postgres_tag = image_tag("postgres")
    postgres_major = re.search(r"Debian 12\s+gives PostgreSQL (\d+)", services_doc)
    assert postgres_major, "docs/services.md names no PostgreSQL version"
    assert (postgres_repository, postgres_tag) == ("postgres", postgres_major.group(1))


def test_ferretdb_stores_in_the_compose_postgresql_once_it_is_healthy() -> None:
    ferretdb = services()["mongo"]
    env = environment(ferretdb)
    assert env.get("FERRETDB_HANDLER") == "postgresql"
    assert urlsplit(env["FERRETDB_POSTGRESQL_URL"]).hostname == "postgres"
    assert depends_on(ferretdb).get("postgres") == "service_healthy"
    assert (services()["postgres"].get("healthcheck") or {}).get("test")


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> volume name of every named volume a service mounts."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            source, target = str(volume).split(":")[:2]
        if source and not source.startswith((".", "/", "$")):
            mounts[target] = source
    return mounts


def test_kafka_keeps_its_log_on_a_named_volume() -> None:
    kafka = services()["kafka"]
    log_dirs = environment(kafka).get("KAFKA_LOG_DIRS", "")
    assert log_dirs, "KAFKA_LOG_DIRS is unset: the image logs to /tmp in the container"
    volumes = named_volumes(kafka)
    for directory in log_dirs.split(","):
        assert directory in volumes, f"Kafka's log dir {directory} is on no named volume"
        assert volumes[directory] in (compose().get("volumes") or {}), volumes[directory]


def test_replicas_point_at_backends_defined_in_compose() -> None:
    for name, service in plop_services().items():
        env = environment(service)
        for variable, (scheme, backend) in BACKEND_URLS.items():
            assert variable in env, f"{name} does not set {variable}"
            url = urlsplit(env[variable])
            assert url.scheme == scheme, f"{name}: {variable}={env[variable]} is not {scheme}://"
            assert url.hostname in services(), (
                f"{name}: {variable} names host {url.hostname!r}, which is no service"
            )
            assert url.hostname == backend, f"{name}: {variable} should point at {backend}"


def test_replicas_listen_on_every_interface_of_their_container() -> None:
    for name, service in plop_services().items():
        env = environment(service)
        assert env.get("PLOP_HOST") == "0.0.0.0", f"{name} must set PLOP_HOST=0.0.0.0"
        assert env.get("PLOP_PORT", str(APP_PORT)) == str(APP_PORT), name


def test_every_plop_variable_in_compose_is_a_setting() -> None:
    fields = Settings.model_fields
    for name, service in plop_services().items():
        for variable in environment(service):
            if not variable.startswith("PLOP_"):
                continue
            field = variable.removeprefix("PLOP_").lower()
            assert field in fields, f"{name} sets {variable}, which Settings does not read"


def test_replicas_have_distinct_instance_ids() -> None:
    ids = [environment(service).get("PLOP_INSTANCE_ID") for service in plop_services().values()]
    named = [instance_id for instance_id in ids if instance_id]
    assert len(named) == len(set(named)), f"replicas share an instance id: {ids}"


def test_replicas_wait_for_healthy_backends() -> None:
    for name, service in plop_services().items():
        deps = depends_on(service)
        for backend in BACKENDS:
            assert deps.get(backend) == "service_healthy", (
                f"{name} must wait for {backend} to be healthy, not {deps.get(backend)!r}"
            )
    for backend in BACKENDS:
        healthcheck = services()[backend].get("healthcheck") or {}
        assert healthcheck.get("test"), f"{backend} has no healthcheck to wait for"


def test_replicas_build_from_the_repository_with_docker_dockerfile() -> None:
    for name, service in plop_services().items():
        build = service.get("build")
        assert isinstance(build, dict), f"{name} must build the image (build: context/dockerfile)"
        context = (DOCKER / str(build.get("context", "."))).resolve()
        assert context == REPO, f"{name} builds from {context}, not the repository root"
        dockerfile = PurePosixPath(str(build.get("dockerfile", "Dockerfile")))
        assert dockerfile == PurePosixPath("docker/Dockerfile"), f"{name} uses {dockerfile}"
        assert (context / dockerfile).is_file()


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in services().items():
        for host_ip, host_port, container_port in published_ports(service):
            assert host_ip == "127.0.0.1", (
                f"{name} publishes {host_port}->{container_port} on {host_ip or 'every interface'}"
            )


def test_each_replica_is_published_on_its_own_port() -> None:
    host_ports: list[str] = []
    for name, service in plop_services().items():
        ports = published_ports(service)
        assert any(container == str(APP_PORT) for _, _, container in ports), (
            f"{name} does not publish port {APP_PORT}"
        )
        host_ports.extend(host for _, host, _ in ports)
    assert len(host_ports) == len(set(host_ports)), f"replicas share host ports {host_ports}"


def test_kafka_advertises_the_address_the_replicas_use_and_creates_no_topics() -> None:
    env = environment(services()["kafka"])
    assert "broker" in env.get("KAFKA_PROCESS_ROLES", ""), "Kafka must run as a KRaft broker"
    assert "controller" in env.get("KAFKA_PROCESS_ROLES", ""), "single node: also controller"
    advertised = {
        urlsplit(listener).netloc for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    for name, service in plop_services().items():
        broker = urlsplit(environment(service)["PLOP_BROKER_URL"]).netloc
        assert broker in advertised, f"{name} dials {broker}; Kafka advertises {advertised}"
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false"


# --- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_builds_on_python_311_slim() -> None:
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases, "the Dockerfile has no FROM"
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the image runs as root: no USER in its final stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the image runs as {users[-1]}"


def test_dockerfile_exposes_the_app_port() -> None:
    exposed = {
        port.split("/")[0]
        for keyword, args in dockerfile_instructions()
        if keyword == "EXPOSE"
        for port in args.split()
    }
    assert str(APP_PORT) in exposed, f"EXPOSE {APP_PORT} missing; exposed: {exposed}"


def test_dockerfile_starts_plop_serve_on_every_interface() -> None:
    stage = final_stage()
    entrypoint = [command_words(a) for k, a in stage if k == "ENTRYPOINT"]
    cmd = [command_words(a) for k, a in stage if k == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert argv[:2] == ["plop", "serve"], f"the image runs {argv}, not `plop serve`"
    assert argv[argv.index("--host") + 1] == "0.0.0.0", argv
    assert argv[argv.index("--port") + 1] == str(APP_PORT), argv


def test_dockerfile_healthcheck_asks_healthz_with_python() -> None:
    checks = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert checks, "the image has no HEALTHCHECK"
    _, _, command = checks[-1].partition("CMD ")
    words = command_words(command.strip())
    assert words[0].startswith("python"), f"the slim image has no curl: {words}"
    assert f":{APP_PORT}/healthz" in " ".join(words), words


def test_replicas_healthcheck_asks_readyz_with_python() -> None:
    for name, service in plop_services().items():
        test = (service.get("healthcheck") or {}).get("test")
        assert isinstance(test, list), f"{name} has no healthcheck in exec form"
        assert test[0] == "CMD" and test[1].startswith("python"), f"{name}: {test}"
        assert f":{ADMIN_PORT}/readyz" in " ".join(test), f"{name} does not ask /readyz: {test}"


def test_replicas_serve_metrics_and_readyz_on_an_admin_port_they_do_not_publish() -> None:
    for name, service in plop_services().items():
        env = environment(service)
        assert env.get("PLOP_ADMIN_PORT") == str(ADMIN_PORT), f"{name}: {env}"
        # Reached by Prometheus from its own container, over the compose network.
        assert env.get("PLOP_ADMIN_HOST") == "0.0.0.0", f"{name}: {env}"
        containers = [container for _, _, container in published_ports(service)]
        assert str(ADMIN_PORT) not in containers, f"{name} publishes its admin port"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip().strip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for path in (".git", ".venv", ".services", "bench/results"):
        assert path in ignored, f".dockerignore does not exclude {path}"


# --- Prometheus and Grafana ------------------------------------------------------------


def test_prometheus_scrapes_metrics_of_both_replicas() -> None:
    config = load_yaml(PROMETHEUS_FILE)
    scraped = {
        str(target)
        for job in config.get("scrape_configs", [])
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    }
    for replica in REPLICAS:
        assert f"{replica}:{ADMIN_PORT}" in scraped, f"Prometheus does not scrape {replica}"
        assert f"{replica}:{APP_PORT}" not in scraped, f"{replica}'s public port has no /metrics"
    mounts = bind_mounts(services()["prometheus"])
    assert mounts.get("/etc/prometheus/prometheus.yml") == PROMETHEUS_FILE.resolve(), mounts


def test_grafana_dashboard_charts_every_plop_metric() -> None:
    queries = " ".join(dashboard_queries())
    for metric in DASHBOARD_METRICS:
        names = series_names(metric)
        assert any(re.search(rf"\b{name}(_bucket)?\b", queries) for name in names), (
            f"the dashboard does not chart {sorted(names)}"
        )
    assert "plop_graphql_operation_seconds_bucket" in queries, "latency needs the buckets"
    assert "0.99" in queries, "the latency panel shows p99"
    assert "0.5" in queries, "the latency panel shows p50"
    assert re.search(r"by \([^)]*\bfield\b[^)]*\boutcome\b", queries), (
        "operations are broken down by field and outcome"
    )


def test_grafana_dashboard_queries_only_metrics_plop_exports() -> None:
    known = set().union(*(series_names(metric) for metric in DASHBOARD_METRICS))
    for query in dashboard_queries():
        for name in re.findall(r"\bplop_\w+", query):
            family = name
            for suffix in SERIES_SUFFIXES:
                family = family.removesuffix(suffix)
            assert name in known or family in known, f"{query!r} reads unknown metric {name}"


def test_grafana_is_provisioned_with_the_datasource_and_dashboard() -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    uids = {str(source.get("uid")) for source in datasources["datasources"]}
    urls = {urlsplit(str(source.get("url"))).hostname for source in datasources["datasources"]}
    assert "prometheus" in urls and "prometheus" in services()
    for panel in dashboard_panels():
        datasource = panel.get("datasource") or {}
        if panel.get("targets"):
            assert datasource.get("uid") in uids, f"panel {panel.get('title')!r}: {datasource}"

    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "plop.yml")
    mounts = bind_mounts(services()["grafana"])
    assert mounts.get("/etc/grafana/provisioning") == (GRAFANA_DIR / "provisioning").resolve()
    for provider in providers["providers"]:
        path = str(provider["options"]["path"])
        assert mounts.get(path) == DASHBOARD_FILE.parent.resolve(), (
            f"dashboards are read from {path}, where compose mounts {mounts}"
        )


def test_storage_image_builds_the_versitygw_the_local_services_run() -> None:
    script = (REPO / "scripts" / "services" / "storage.sh").read_text()
    pinned = re.search(r"^VERSITYGW_VERSION=(\d+\.\d+\.\d+)$", script, re.M)
    assert pinned, "scripts/services/storage.sh pins no versitygw version"
    dockerfile = (REPO / "docker" / "storage.Dockerfile").read_text()
    assert f"ARG VERSITYGW_VERSION={pinned.group(1)}" in dockerfile
    storage = services()["storage"]
    assert storage["build"]["dockerfile"] == "docker/storage.Dockerfile"
    assert any(volume.endswith(":/data") for volume in storage.get("volumes", []))
    for name, service in plop_services().items():
        public = parse_qs(urlsplit(environment(service)["PLOP_STORAGE_URL"]).query)["public"]
        assert public == ["http://127.0.0.1:7070"], f"{name} signs URLs clients cannot reach"
