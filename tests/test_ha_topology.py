"""docker/docker-compose.ha.yml, the production topology: checked as files (no engine
runs here) against the Compose spec's JSON schema, against the files it mounts, and
against the settings Plop reads."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

from settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
HA_COMPOSE = DOCKER / "docker-compose.ha.yml"
SCHEMA_SCRIPT = REPO / "scripts" / "compose-schema.sh"
INSTANCES = ("plop-1", "plop-2", "plop-3")
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
MONGO_NODES = ("mongo-1", "mongo-2", "mongo-3")
REDIS_NODES = tuple(f"redis-{n}" for n in range(1, 7))


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(HA_COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return cast(dict[str, Any], loaded)


@cache
def compose_schema() -> dict[str, Any]:
    """The Compose spec's schema, fetched once by the project's own script."""
    done = subprocess.run(
        [str(SCHEMA_SCRIPT)], check=True, capture_output=True, text=True, timeout=300
    )
    path = Path(done.stdout.strip().splitlines()[-1])
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, dict)
    return cast(dict[str, Any], loaded)


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(compose_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def service(name: str) -> dict[str, Any]:
    found = compose()["services"][name]
    assert isinstance(found, dict)
    return cast(dict[str, Any], found)


def environment(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in (service(name).get("environment") or {}).items()}


def mounted(name: str) -> dict[str, Path]:
    """The service's bind mounts: container path -> file or folder on the host."""
    found: dict[str, Path] = {}
    for volume in service(name).get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            found[target] = (DOCKER / source).resolve()
    return found


def command_text(name: str) -> str:
    command = service(name).get("command")
    return " ".join(command) if isinstance(command, list) else str(command)


def address(name: str) -> str:
    return str(service(name)["networks"]["plop"]["ipv4_address"])


@cache
def haproxy_sections() -> dict[str, list[str]]:
    """haproxy.cfg's sections ("backend plop_http" ...) and their lines, no comments."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (DOCKER / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(" ".join(line.split()))
    return sections


# --- the file as a whole ---------------------------------------------------------------


def test_the_compose_file_follows_the_compose_spec() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_refuses_what_compose_would_refuse() -> None:
    misspelt = copy.deepcopy(compose())
    misspelt["services"]["plop-1"]["helthcheck"] = misspelt["services"]["plop-1"].pop("healthcheck")
    assert any("helthcheck" in error for error in schema_errors(misspelt))
    wrong_type = copy.deepcopy(compose())
    wrong_type["services"]["redis-1"]["ports"] = "6379"
    assert any(error.startswith("services/redis-1/ports") for error in schema_errors(wrong_type))


def test_every_file_it_mounts_or_builds_from_exists() -> None:
    mounts = {name: mounted(name) for name in compose()["services"]}
    assert sum(len(found) for found in mounts.values()) >= 4
    for name, found in mounts.items():
        for target, source in found.items():
            assert source.exists(), f"{name} mounts {source} at {target}: no such file"
    for name, spec in compose()["services"].items():
        build = spec.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name} builds from nothing"


# --- the backends: three of each -------------------------------------------------------


def test_three_kafka_brokers_form_one_quorum_and_keep_three_copies() -> None:
    voters = set()
    ids = set()
    for broker in BROKERS:
        env = environment(broker)
        ids.add(env["KAFKA_NODE_ID"])
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{broker}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert ids == {"1", "2", "3"}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({environment(broker)["CLUSTER_ID"] for broker in BROKERS}) == 1


def test_a_mongodb_replica_set_of_three() -> None:
    for node in MONGO_NODES:
        assert "--replSet rs0" in command_text(node)
    init = command_text("mongo-init")
    assert all(f'host: "{node}:27017"' in init for node in MONGO_NODES)
    assert set(service("mongo-init")["depends_on"]) == set(MONGO_NODES)


def test_a_redis_cluster_of_three_masters_with_a_replica_each() -> None:
    addresses = {node: address(node) for node in REDIS_NODES}
    assert len(set(addresses.values())) == len(REDIS_NODES)
    for node in REDIS_NODES:
        assert "--cluster-enabled yes" in command_text(node)
    create = command_text("redis-cluster-init")
    assert re.search(r"--cluster create(\s+[\d.]+:6379){6}\s+--cluster-replicas 1", create)
    assert set(re.findall(r"([\d.]+):6379", create)) == set(addresses.values())


# --- Plop's instances ------------------------------------------------------------------


def test_three_instances_read_every_backend_as_a_cluster() -> None:
    ids = set()
    for instance in INSTANCES:
        env = environment(instance)
        ids.add(env["PLOP_INSTANCE_ID"])
        for variable in env:
            assert variable.removeprefix("PLOP_").lower() in Settings.model_fields, variable
        broker = urlsplit(env["PLOP_BROKER_URL"])
        assert broker.scheme == "kafka"
        assert broker.netloc.split(",") == [f"{name}:9092" for name in BROKERS]
        assert env["PLOP_KAFKA_REPLICATION_FACTOR"] == "3"
        assert env["PLOP_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        redis = urlsplit(env["PLOP_REDIS_URL"])
        assert redis.scheme == "redis+cluster"
        assert set(redis.netloc.split(",")) <= {f"{node}:6379" for node in REDIS_NODES}
        mongo = urlsplit(env["PLOP_MONGO_URL"])
        assert mongo.netloc.split(",") == [f"{node}:27017" for node in MONGO_NODES]
        assert parse_qs(mongo.query)["replicaSet"] == ["rs0"]
        assert urlsplit(env["PLOP_STORAGE_URL"]).hostname == "storage"
        # Only the load balancer's X-Forwarded-For names a client.
        assert env["PLOP_FORWARDED_ALLOW_IPS"] == address("load-balancer")
        assert "ports" not in service(instance), "instances are reached through the balancer"
        waits_for = service(instance)["depends_on"]
        assert {"mongo-init", "redis-cluster-init", "storage", *BROKERS} <= set(waits_for)
    assert ids == set(INSTANCES)


# --- the load balancer, Prometheus, Grafana ---------------------------------------------


def test_the_load_balancer_forwards_websockets_to_the_three_instances() -> None:
    assert mounted("load-balancer") == {
        "/usr/local/etc/haproxy/haproxy.cfg": DOCKER / "haproxy.cfg"
    }
    sections = haproxy_sections()
    frontend = sections["frontend plop"]
    (bind,) = [line for line in frontend if line.startswith("bind ")]
    published = [str(port).rsplit(":", 1)[-1] for port in service("load-balancer")["ports"]]
    assert published == [bind.rsplit(":", 1)[-1]]
    # WebSocket upgrades are told apart and sent to a backend of their own.
    (acl,) = [line for line in frontend if line.startswith("acl ")]
    assert re.fullmatch(r"acl (\S+) hdr\(Upgrade\) -i websocket", acl)
    websocket_acl = acl.split()[1]
    (routed,) = [line for line in frontend if line.startswith("use_backend ")]
    assert routed.endswith(f"if {websocket_acl}")
    used = {
        routed.split()[1],
        next(line.split()[1] for line in frontend if "default_backend" in line),
    }
    assert any(line.startswith("timeout tunnel ") for line in sections["defaults"])
    port = environment(INSTANCES[0])["PLOP_PORT"]
    admin_port = environment(INSTANCES[0])["PLOP_ADMIN_PORT"]
    for backend in used:
        lines = sections[f"backend {backend}"]
        servers = [line.split()[1:3] for line in lines if line.startswith("server ")]
        assert servers == [[name, f"{name}:{port}"] for name in INSTANCES]
        assert "http-check send meth GET uri /readyz" in lines
        (checks,) = [line.split() for line in lines if line.startswith("default-server ")]
        assert checks[1:4] == ["check", "port", admin_port], checks


def test_prometheus_scrapes_the_three_instances_on_their_admin_port() -> None:
    config_file = mounted("prometheus")["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text())
    (plop_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "plop"]
    targets = {target for group in plop_job["static_configs"] for target in group["targets"]}
    admin_port = environment(INSTANCES[0])["PLOP_ADMIN_PORT"]
    assert targets == {f"{instance}:{admin_port}" for instance in INSTANCES}


def test_grafana_has_prometheus_as_its_data_source() -> None:
    provisioning = mounted("grafana")["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus"
    assert f"127.0.0.1:{url.port}:{url.port}" in service("prometheus")["ports"]
