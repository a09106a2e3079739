"""docker-compose.yaml as `docker compose config` renders it, checked without Docker.

The file is loaded with PyYAML (``safe_load`` resolves the anchors and ``<<`` merge keys, as
Compose does), its values are interpolated from an env file the way Compose does, and
pass-through variables (``NAME:`` with no value) are resolved or dropped. The checks are what
a user of the stack relies on: the services, healthchecks that fail when a component is down,
mounts that exist, one image, and secrets that come from ``.env`` only.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

INFRASTRUCTURE = {"postgres", "warehouse", "redis"}
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "airflow-worker", "airflow-init",
}
REQUIRED_SECRETS = (
    "FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "_AIRFLOW_WWW_USER_PASSWORD",
    "AIRFLOW_DB_PASSWORD", "WAREHOUSE_DB_PASSWORD",
)


# -- a `docker compose config` equivalent, limited to what the compose file uses -----------

class MissingVariable(ValueError):
    """A ``${NAME:?message}`` / ``${NAME?message}`` whose variable is missing (compose refuses)."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution in one string.

    Supported, as in the Compose specification: ``$$`` (a literal ``$``), ``$NAME``,
    ``${NAME}``, ``${NAME:-default}`` / ``${NAME-default}`` (default when unset or empty /
    unset), ``${NAME:?message}`` / ``${NAME?message}`` (an error when unset or empty /
    unset), with substitutions nested in the default or message. An unset ``${NAME}`` is
    empty (Compose warns). Anything else raises ``ValueError``, as Compose does.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2:end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise ValueError(f"invalid interpolation format in {text!r} at {i}")
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, j = 1, start
    while j < len(text):
        if text.startswith("$$", j):
            j += 2
            continue
        if text.startswith("${", j):
            depth += 1
            j += 2
            continue
        if text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if not match:
        raise ValueError(f"invalid variable name in ${{{body}}}")
    name, rest = match.group(), body[match.end():]
    value = env.get(name)
    if rest == "":
        return value or ""
    for operator, when_missing in ((":-", not value), ("-", value is None),
                                   (":?", not value), ("?", value is None)):
        if rest.startswith(operator):
            argument = rest[len(operator):]
            if not when_missing:
                return value
            if operator.endswith("-"):
                return interpolate(argument, env)
            raise MissingVariable(f"required variable {name} is missing a value: {interpolate(argument, env)}")
    raise ValueError(f"unsupported substitution ${{{body}}}")


def _interpolate_values(node, env: Mapping[str, str]):
    """Interpolate every string value (Compose leaves mapping keys alone)."""
    if isinstance(node, dict):
        return {key: _interpolate_values(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_values(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def _resolve_environment(environment, env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as the container gets it: ``NAME:`` (no value) passes the
    variable through from the shell or .env when set there and leaves it unset otherwise."""
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    resolved = {}
    for key, value in (environment or {}).items():
        if value is None:
            if key in env:
                resolved[key] = env[key]
        else:
            resolved[key] = str(value)
    return resolved


def render(env: Mapping[str, str]) -> dict:
    """The compose file as ``docker compose config`` shows it for ``env`` (the .env file)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    config = _interpolate_values({k: v for k, v in raw.items() if not k.startswith("x-")}, env)
    for service in config["services"].values():
        if "environment" in service:
            service["environment"] = _resolve_environment(service["environment"], env)
    return config


def example_env(**overrides: str | None) -> dict[str, str]:
    """.env.example with every required secret filled in (a value of None unsets a variable)."""
    env = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}
    env.update({name: f"test-{name.lower().strip('_')}-value" for name in REQUIRED_SECRETS})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.fixture(scope="module")
def config() -> dict:
    return render(example_env())


# -- the interpolation helper itself -------------------------------------------------------

def test_interpolation_follows_the_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOSTNAME ${SET} $SET", env) == "$HOSTNAME x x"
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET}", env) == "d  d "
    assert interpolate("${UNSET:-a${SET}b} ${SET:-${UNSET:?never evaluated}}", env) == "axb x"
    with pytest.raises(MissingVariable, match="EMPTY is missing a value: set it"):
        interpolate("${EMPTY:?set it}", env)
    assert interpolate("${EMPTY?only when unset}", env) == ""
    with pytest.raises(ValueError):
        interpolate("${SET/x/y}", env)


# -- services, image, executor -------------------------------------------------------------

def test_the_stack_has_every_service(config):
    default = {name for name, s in config["services"].items() if not s.get("profiles")}
    assert default == INFRASTRUCTURE | AIRFLOW_SERVICES
    assert config["services"]["airflow-init"]["depends_on"].keys() >= INFRASTRUCTURE
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert config["services"][name]["depends_on"]["airflow-init"] == {
            "condition": "service_completed_successfully"}, name


def test_every_airflow_service_runs_one_image_built_from_the_dockerfile():
    for env, tag in ((example_env(AIRFLOW_IMAGE_NAME=None), "agent-billing:local"),
                     (example_env(AIRFLOW_IMAGE_NAME="registry.example.com/agent-billing:1.2.0"),
                      "registry.example.com/agent-billing:1.2.0")):
        services = render(env)["services"]
        airflow = {name for name, s in services.items() if "build" in s}
        assert airflow >= AIRFLOW_SERVICES
        assert {services[name]["image"] for name in airflow} == {tag}
        assert {services[name]["build"] for name in airflow} == {"."}
        assert (ROOT / "Dockerfile").is_file()
    assert not {name for name in INFRASTRUCTURE if "build" in services[name]}


def test_the_executor_is_celery_with_the_redis_broker(config):
    services = config["services"]
    for name, service in services.items():
        if "build" not in service:
            continue
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres/airflow"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "redis" in services and services["airflow-worker"]["command"] == "celery worker"


# -- healthchecks --------------------------------------------------------------------------

def _healthcheck(config: dict, service: str) -> str:
    test = config["services"][service]["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_each_long_running_service_checks_its_own_component(config):
    for name, service in config["services"].items():
        if name not in {"airflow-init", "airflow-cli"}:
            assert "healthcheck" in service, name
    api = _healthcheck(config, "airflow-apiserver")
    assert "http://localhost:8080/api/v2/monitor/health" in api
    assert all(f"'{component}'" in api for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
    assert "http://localhost:8974/health" in _healthcheck(config, "airflow-scheduler")
    assert "--job-type DagProcessorJob" in _healthcheck(config, "airflow-dag-processor")
    assert "--job-type TriggererJob" in _healthcheck(config, "airflow-triggerer")
    assert "inspect ping" in _healthcheck(config, "airflow-worker")
    # $$ is Compose's escape: the container's shell expands its own hostname.
    assert '--hostname "${HOSTNAME}"' in _healthcheck(config, "airflow-triggerer")


class _HealthServer(http.server.ThreadingHTTPServer):
    """Answers /api/v2/monitor/health with ``body`` and ``status``, as the API server does."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.status, self.body = 200, b"{}"


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        found = self.path == "/api/v2/monitor/health"
        self.send_response(self.server.status if found else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.server.body if found else b"{}")

    def log_message(self, *args):
        pass


def _airflow_health_body(**statuses: str | None) -> bytes:
    """The body Airflow 3.3.2 serves: get_airflow_health()'s dict through HealthInfoResponse."""
    from airflow.api_fastapi.core_api.datamodels.monitor import HealthInfoResponse

    status = {"metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy",
              "dag_processor": "healthy"} | statuses
    beat = "2026-12-01T02:00:00+00:00"
    payload = {
        "metadatabase": {"status": status["metadatabase"]},
        "scheduler": {"status": status["scheduler"], "latest_scheduler_heartbeat": beat},
        "triggerer": {"status": status["triggerer"], "latest_triggerer_heartbeat": beat},
        "dag_processor": {"status": status["dag_processor"], "latest_dag_processor_heartbeat": beat},
    }
    model = HealthInfoResponse.model_validate(payload)
    return model.model_dump_json(exclude_unset=True, by_alias=True).encode()


@pytest.fixture
def health_server():
    server = _HealthServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_api_server_is_healthy_only_when_every_component_is(config, health_server):
    """The check itself, run against the JSON Airflow serves (the image's python is a python)."""
    test = config["services"]["airflow-apiserver"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    url = f"http://127.0.0.1:{health_server.server_port}"
    script = test[3].replace("http://localhost:8080", url)

    def check(status: int, body: bytes) -> subprocess.CompletedProcess:
        health_server.status, health_server.body = status, body
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert check(200, _airflow_health_body()).returncode == 0
    down = check(200, _airflow_health_body(scheduler="unhealthy"))  # HTTP 200, scheduler down
    assert down.returncode == 1 and down.stderr.strip() == "not healthy: scheduler"
    never_started = check(200, _airflow_health_body(triggerer=None, dag_processor=None))
    assert never_started.returncode == 1
    assert never_started.stderr.strip() == "not healthy: triggerer, dag_processor"
    no_db = check(200, _airflow_health_body(metadatabase="unhealthy"))
    assert no_db.returncode == 1 and "metadatabase" in no_db.stderr
    assert check(500, b"{}").returncode != 0


# -- mounts and volumes --------------------------------------------------------------------

def _init_creates(config: dict) -> set[str]:
    """Container paths airflow-init creates: its ``mkdir -v -p /opt/airflow/{a,b,c/d}``."""
    script = config["services"]["airflow-init"]["command"][1]
    (names,) = re.findall(r"mkdir -v -p /opt/airflow/\{([^}]*)\}", script)
    return {"/opt/airflow/" + name.split("/")[0] for name in names.split(",")}


def _mounts(config: dict):
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            yield name, source, target


def test_every_bind_mount_exists_in_the_repository_or_is_created_by_airflow_init(config):
    created = _init_creates(config)
    binds = [(name, source, target) for name, source, target in _mounts(config)
             if source.startswith((".", "/"))]
    assert {target for _, _, target in binds} >= {
        "/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include",
        "/opt/airflow/logs", "/opt/airflow/config", "/opt/airflow/data"}
    for name, source, target in binds:
        host = (ROOT / source).resolve()
        assert host.is_relative_to(ROOT), (name, source)
        assert host.is_dir() or target in created, f"{name}: {source} is neither in the repository nor created"
    for folder in ("dags", "plugins", "include"):  # code the containers import
        assert any((ROOT / folder).glob("*.py")) or any((ROOT / folder).glob("*/__init__.py")), folder
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/logs/", "/config/", "/data/"} <= set(ignored)  # created at run time, never committed


def test_named_volumes_are_declared_and_used(config):
    named = {source for _, source, _ in _mounts(config) if not source.startswith((".", "/"))}
    assert named == set(config["volumes"]) == {"postgres-db-volume", "warehouse-db-volume"}


# -- secrets and settings ------------------------------------------------------------------

@pytest.mark.parametrize("name", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_each_secret(name):
    with pytest.raises(MissingVariable, match=f"required variable {name} is missing"):
        render(example_env(**{name: ""}))
    with pytest.raises(MissingVariable, match=name):
        render(example_env(**{name: None}))


def test_the_example_env_leaves_every_secret_to_fill_in():
    example = dotenv_values(ENV_EXAMPLE)
    assert all(example.get(name) == "" for name in REQUIRED_SECRETS)
    with pytest.raises(MissingVariable):
        render({k: v for k, v in example.items() if v is not None})


def test_no_secret_is_written_in_the_file(config):
    """Every password, key and secret the services get is the value from .env."""
    env = example_env()
    secret_key = re.compile(r"PASSWORD|SECRET|FERNET_KEY")
    for name, service in config["services"].items():
        for key, value in service.get("environment", {}).items():
            if secret_key.search(key):
                assert value in {env[s] for s in REQUIRED_SECRETS}, (name, key)
    common = config["services"]["airflow-scheduler"]["environment"]
    password = env["AIRFLOW_DB_PASSWORD"]
    assert common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://airflow:{password}@postgres/airflow"
    assert f":{password}@postgres/" in common["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert config["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert config["services"]["warehouse"]["environment"]["POSTGRES_PASSWORD"] == env["WAREHOUSE_DB_PASSWORD"]


def test_the_admin_password_reaches_airflow_init_only(config):
    password = example_env()["_AIRFLOW_WWW_USER_PASSWORD"]
    services = config["services"]
    assert services["airflow-init"]["environment"]["_AIRFLOW_WWW_USER_PASSWORD"] == password
    for name, service in services.items():
        assert "env_file" not in service, f"{name} would get every variable of .env"
        if name != "airflow-init":
            assert password not in yaml.safe_dump(service), name


def test_the_warehouse_url_comes_from_env_with_the_warehouse_service_as_default():
    env = example_env(AIRFLOW_CONN_BILLING_WAREHOUSE=None)
    services = render(env)["services"]
    default = f"postgresql://billing:{env['WAREHOUSE_DB_PASSWORD']}@warehouse:5432/billing"
    own = "postgresql://billing:s3cret@db.example.com:5432/billing"
    chosen = render(example_env(AIRFLOW_CONN_BILLING_WAREHOUSE=own))["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW_CONN_BILLING_WAREHOUSE"] == default
        assert chosen[name]["environment"]["AIRFLOW_CONN_BILLING_WAREHOUSE"] == own
    assert services["warehouse"]["environment"]["POSTGRES_USER"] == "billing"


def test_every_package_setting_reaches_the_containers_and_unset_ones_stay_unset():
    from agent_billing.settings import Settings

    names = {f"AGENT_BILLING_{field.upper()}" for field in Settings.model_fields}
    unset = example_env(AGENT_BILLING_TIMEZONE=None, AGENT_BILLING_SYNC_CRON=None)
    chosen = example_env(AGENT_BILLING_TIMEZONE="Europe/Amsterdam", AGENT_BILLING_LATE_GRACE_HOURS="48")
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert names <= set(raw["x-airflow-common"]["environment"])
    for name in AIRFLOW_SERVICES:
        env = render(unset)["services"][name]["environment"]
        assert "AGENT_BILLING_TIMEZONE" not in env and "AGENT_BILLING_LATE_GRACE_HOURS" not in env
        assert env["AGENT_BILLING_RAW_PATH"] == "/opt/airflow/data/raw"
        env = render(chosen)["services"][name]["environment"]
        assert env["AGENT_BILLING_TIMEZONE"] == "Europe/Amsterdam"
        assert env["AGENT_BILLING_LATE_GRACE_HOURS"] == "48"
        assert env["AGENT_BILLING_SYNC_CRON"] == "0 2 * * *"


def test_every_variable_the_file_reads_is_described_in_env_example():
    text = COMPOSE_FILE.read_text()
    substituted = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", text.replace("$$", "")))
    raw = yaml.safe_load(text)
    passed_through = {key for service in [raw["x-airflow-common"], *raw["services"].values()]
                      for key, value in (service.get("environment") or {}).items() if value is None}
    described = set(re.findall(r"^#? ?([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert substituted | passed_through
    assert (substituted | passed_through) - described == set()
