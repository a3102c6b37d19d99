"""The production stack's files: docker-compose.yml checked by a real Compose implementation
(Debian's `docker-compose`, or the docker client's compose plugin), the Dockerfile, the
Makefile's stack targets and .env.example checked against what the app expects; the settings a
container would get, loaded from the secret files `make secrets` writes. No Docker engine is
needed."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.support.services import compose_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

STACK = {"redis", "postgres", "migrate", "web", "worker", "beat", "inbound", "mailpit"}
# Run-once or optional: every other service must say whether it is healthy.
WITHOUT_HEALTHCHECK = {"migrate", "flower"}
APP_SERVICES = {"web", "worker", "beat", "inbound"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY|TOKEN|DATABASE_URL|MAIL_URL", re.IGNORECASE)
# What the app services read from Docker secrets, by setting.
SECRET_FILES = {
    "PAPERWIRE_SECRET_KEY_FILE": "secret_key",
    "PAPERWIRE_DATABASE_PASSWORD_FILE": "postgres_password",
    "PAPERWIRE_MAIL_URL_FILE": "mail_url",
    "PAPERWIRE_METRICS_TOKEN_FILE": "metrics_token",
}
# A tag naming at least a minor version (7.4, v1.26, 16.9, 2.0.1), never `latest` or a major.
PINNED_TAG = re.compile(r":v?\d+\.\d+[\w.-]*$")
# A batch of 100 issues takes 1.8 s into a local sink (bench.digest_run) and minutes under a
# low shared rate limit: the README's reckoning asks for at least this much to finish it.
LONGEST_BATCH_SECONDS = 160


@pytest.fixture(scope="module")
def compose() -> list[str]:
    return compose_command()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the stack with .env made from .env.example, as an operator's first step does."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    yield tmp_path


def _run_compose(command: list[str], project: Path, *args: str) -> str:
    # A clean environment, so that no PAPERWIRE_* or COMPOSE_* variable of the shell leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)} {' '.join(args)}: {result.stderr}"
    return result.stdout


def _compose_data() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose_data()["services"]
    assert isinstance(services, dict)
    return services


def _env_example() -> dict[str, str]:
    """Every variable .env.example names, set or commented out, with its value."""
    entries: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def _env_example_set() -> dict[str, str]:
    """The variables .env.example sets (not those it shows commented out)."""
    return {
        name: value
        for name, value in (
            line.split("=", 1)
            for line in ENV_EXAMPLE.read_text().splitlines()
            if re.match(r"^[A-Z][A-Z0-9_]*=", line)
        )
    }


def _final_stage(dockerfile: str) -> str:
    stages = re.split(r"(?im)^FROM\s", dockerfile)
    return stages[-1]


def _seconds(duration: str) -> float:
    """A Compose duration: 90s, 3m, 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def _make(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- Compose, checked by Compose ----------------------------------------------------------------


def test_compose_config_is_valid(compose: list[str], project: Path) -> None:
    rendered = _run_compose(compose, project, "config")
    assert "services:" in rendered


def test_compose_lists_the_stack_services(compose: list[str], project: Path) -> None:
    services = set(_run_compose(compose, project, "config", "--services").split())
    assert services >= STACK


def test_compose_flower_profile(compose: list[str], project: Path) -> None:
    services = set(
        _run_compose(compose, project, "--profile", "flower", "config", "--services").split()
    )
    assert services >= STACK | {"flower"}
    assert _services()["flower"]["profiles"] == ["flower"]


# -- Compose, checked against what the stack needs ----------------------------------------------


def test_long_running_services_have_healthchecks() -> None:
    for name, service in _services().items():
        if name in WITHOUT_HEALTHCHECK:
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"


def test_app_services_wait_for_migrate() -> None:
    services = _services()
    assert services["migrate"]["command"] == ["paperwire", "db", "upgrade"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["env_file"] == ".env", name
    assert services["worker"]["command"] == ["paperwire", "worker", "--loglevel=info"]
    assert services["beat"]["command"][:2] == ["paperwire", "beat"]
    assert "8000" in " ".join(services["web"]["ports"])
    assert services["inbound"]["command"][:2] == ["paperwire", "inbound"]
    assert services["inbound"]["ports"] == ["${INBOUND_SMTP_PORT:-25}:2525"]


def test_redis_keeps_an_append_only_file_and_mailpit_is_the_default_relay() -> None:
    services = _services()
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["image"] == "redis:7.4"
    assert services["postgres"]["image"] == "postgres:16.9"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert _env_example()["PAPERWIRE_MAIL_URL"] == "smtp://mailpit:1025"


def test_every_image_is_pinned_to_a_minor_version_or_a_release() -> None:
    # paperwire:local is built here, from the Dockerfile.
    images = {service["image"] for service in _services().values()} - {"paperwire:local"}
    assert len(images) == 6  # redis, postgres, mailpit, flower, prometheus, grafana
    for image in images:
        assert PINNED_TAG.search(image), image
    for base in re.findall(r"(?im)^FROM\s+(\S+)", DOCKERFILE.read_text()):
        # The Python minor version and the Debian release it is built on.
        assert base == "python:3.11-slim-bookworm", base


def test_compose_file_holds_no_secrets() -> None:
    # A secret-looking variable is either taken from .env by interpolation or, as a _FILE,
    # names a Docker secret's mount: never written out.
    for name, service in _services().items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}"
            elif SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}: {key} is written out"


def test_secrets_come_from_files_and_the_database_password_is_written_once() -> None:
    data = _compose_data()
    assert data["secrets"] == {
        name: {"file": f"./secrets/{name}"}
        for name in (
            "secret_key",
            "postgres_password",
            "mail_url",
            "metrics_token",
            "grafana_admin_password",
        )
    }
    services = _services()
    for name in APP_SERVICES | {"migrate"}:
        environment = services[name]["environment"]
        for variable, secret in SECRET_FILES.items():
            assert environment[variable] == f"/run/secrets/{secret}", (name, variable)
        assert set(services[name]["secrets"]) == set(SECRET_FILES.values()), name
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert postgres["secrets"] == ["postgres_password"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    # .env sets none of them: a setting given both ways would be refused.
    assert {
        "PAPERWIRE_SECRET_KEY",
        "PAPERWIRE_DATABASE_PASSWORD",
        "PAPERWIRE_MAIL_URL",
        "PAPERWIRE_METRICS_TOKEN",
    }.isdisjoint(_env_example_set())
    assert not any("PASSWORD" in name for name in _env_example_set())
    assert _env_example_set()["PAPERWIRE_DATABASE_URL"] == (
        "postgresql+psycopg://paperwire@postgres:5432/paperwire"
    )


def test_a_container_loads_its_settings_from_the_secret_files(
    compose: list[str], project: Path
) -> None:
    """The web service's environment as Compose renders it, with the secrets `make secrets`
    wrote where Docker would mount them: the settings load in production mode."""
    assert _make("secrets", cwd=project).returncode == 0
    rendered = yaml.safe_load(_run_compose(compose, project, "config"))
    files = {name: secret["file"] for name, secret in rendered["secrets"].items()}
    environment = {
        key: str(value) for key, value in rendered["services"]["web"]["environment"].items()
    }
    for key, value in environment.items():
        if value.startswith("/run/secrets/"):
            environment[key] = files[value.removeprefix("/run/secrets/")]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from service.settings import Settings; s = Settings(); "
            "print(s.environment, s.secret_key.get_secret_value(), s.database_url, s.mail_url)",
        ],
        env={"PATH": os.environ.get("PATH", ""), "PAPERWIRE_ENV_FILE": "", **environment},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    key = (project / "secrets" / "secret_key").read_text().strip()
    password = (project / "secrets" / "postgres_password").read_text().strip()
    assert loaded.stdout.split() == [
        "production",
        key,
        f"postgresql+psycopg://paperwire:{password}@postgres:5432/paperwire",
        "smtp://mailpit:1025",
    ]


def test_workers_get_longer_than_a_batch_to_finish_when_stopped() -> None:
    worker = _services()["worker"]
    assert _seconds(worker["stop_grace_period"]) >= LONGEST_BATCH_SECONDS
    # Exec form: no shell between Docker's SIGTERM and the process (which execs Celery).
    assert isinstance(worker["command"], list) and worker["command"][:2] == ["paperwire", "worker"]


@pytest.mark.parametrize(
    ("age_seconds", "healthy"), [(5, True), (170, True), (190, False), (None, False)]
)
def test_beats_health_check_fails_once_its_heartbeat_is_a_few_minutes_old(
    tmp_path: Path, age_seconds: float | None, healthy: bool
) -> None:
    test = _services()["beat"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    heartbeat = tmp_path / "beat-heartbeat"
    if age_seconds is not None:
        heartbeat.write_text("")
        then = time.time() - age_seconds
        os.utime(heartbeat, (then, then))
    check = subprocess.run(
        [sys.executable, "-c", test[3]],
        env={"PATH": os.environ.get("PATH", ""), "PAPERWIRE_BEAT_HEARTBEAT_FILE": str(heartbeat)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (check.returncode == 0) is healthy, check.stderr


# -- Makefile -----------------------------------------------------------------------------------


def test_make_help_lists_the_targets(tmp_path: Path) -> None:
    listed = _make("help", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    for target in ("demo", "test", "up", "down", "logs", "secrets", "help"):
        assert target in names


def test_make_up_down_and_logs_run_compose(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    for target, command in (
        ("up", "up -d --build"),
        ("down", "down"),
        ("logs", "logs --follow --tail=100"),
    ):
        dry = _make("-n", target, "COMPOSE=docker compose", cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert f"docker compose {command}" in dry.stdout.splitlines()


def test_make_up_asks_for_an_env_file_first(tmp_path: Path) -> None:
    refused = _make("up", "COMPOSE=false", cwd=tmp_path)
    assert refused.returncode != 0
    assert "cp .env.example .env" in refused.stderr


def test_make_secrets_writes_random_ones_and_keeps_those_that_exist(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mail_url").write_text("smtp://relay.example.org:587?starttls=1\n")
    assert _make("secrets", cwd=tmp_path).returncode == 0
    folder = tmp_path / "secrets"
    key = (folder / "secret_key").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", key)
    assert (folder / "postgres_password").read_text() != key
    assert re.fullmatch(r"[0-9a-f]{64}\n", (folder / "metrics_token").read_text())
    assert (folder / "grafana_admin_password").is_file()
    assert (folder / "mail_url").read_text() == "smtp://relay.example.org:587?starttls=1\n"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "secret_key").stat().st_mode & 0o777 == 0o644
    assert _make("secrets", cwd=tmp_path).returncode == 0
    assert (folder / "secret_key").read_text() == key


# -- .env.example -------------------------------------------------------------------------------


def test_env_example_lists_every_setting() -> None:
    listed = {name for name in _env_example() if name.startswith("PAPERWIRE_")}
    expected = {f"PAPERWIRE_{field.upper()}" for field in Settings.model_fields}
    assert expected - listed == set()
    assert listed - expected == set()


def test_env_example_marks_what_to_change_and_holds_no_secret() -> None:
    text = ENV_EXAMPLE.read_text()
    example = _env_example()
    # The placeholder key is refused in production: a stack without its secret file stops.
    assert example["PAPERWIRE_ENVIRONMENT"] == "production"
    assert example["PAPERWIRE_SECRET_KEY"] == "change-me"
    assert "PAPERWIRE_SECRET_KEY" not in _env_example_set()
    assert text.count("CHANGE ME") >= 2


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_final_stage_runs_as_non_root_and_copies_templates() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert len(re.findall(r"(?im)^FROM\s+python:3\.11-slim", dockerfile)) >= 2
    final = _final_stage(dockerfile)
    users = re.findall(r"(?im)^USER\s+(\S+)", final)
    assert users and users[-1] not in ("root", "0"), users
    assert re.search(r"(?im)^COPY\s+.*templates/", final)
    # Compilers stay in the builder stage.
    assert "build-essential" not in final and "gcc" not in final
    assert "PYTHONUNBUFFERED=1" in final
    assert re.search(r"(?ims)^HEALTHCHECK\s.*?/healthz", final)
    assert 'CMD ["paperwire", "serve", "--host", "0.0.0.0", "--port", "8000"]' in final


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    builder = re.split(r"(?im)^FROM\s", DOCKERFILE.read_text())[1]
    wheels = builder.index("pip wheel")
    assert builder.index("COPY pyproject.toml") < wheels < builder.index("COPY service/")


def test_dockerignore_keeps_secrets_and_caches_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".git", ".venv/", "var/", "secrets/"):
        assert entry in ignored
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
