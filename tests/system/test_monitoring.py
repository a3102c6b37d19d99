"""The monitoring profile's files: the Prometheus config and alert rules checked by promtool
(Debian's `prometheus` package), the Grafana dashboard checked as its provisioning reads it,
every query of both naming only series, labels and label values that Paperwire exports (read
from a real scrape), and the compose profile checked by Compose. No Docker engine is needed,
and Grafana is not run: its image is not here."""

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from service.store import Store
from tests.support.factories import NOW
from tests.support.monitoring import (
    DASHBOARD_FILE,
    GRAFANA,
    MONITORING,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    Series,
    alert_rules,
    dashboard,
    dashboard_queries,
    debian_tool,
    exported_series,
    serving_metrics,
)
from tests.support.promql import grouping_labels, selectors
from tests.support.services import compose_command

ROOT = MONITORING.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# Series Prometheus makes itself, and the labels it gives every scraped series.
PROMETHEUS_SERIES = {"up": {"job", "instance"}, "ALERTS": {"alertname", "alertstate", "severity"}}
TARGET_LABELS = {"job", "instance"}
# What the issue asks the dashboard to show, by a series each panel of it reads.
DASHBOARD_TOPICS = {
    "today's issues by status": "paperwire_issues",
    "send rate": "paperwire_digests_sent_total",
    "p95 send latency": "paperwire_send_duration_seconds_bucket",
    "bounces and complaints": "paperwire_mail_events_today",
    "signups": "paperwire_signups_total",
    "queue depth": "paperwire_queue_depth",
    "fetch health": "paperwire_paper_fetch_last_timestamp_seconds",
}
REQUIRED_ALERTS = {"PaperwireIssuesLate", "PaperwireComplaintRateHigh", "PaperwireNoPaperFetch"}
GRID_COLUMNS = 24
# A release tag: v2.55.1, 11.4.0.
RELEASE_TAG = re.compile(r":v?\d+\.\d+\.\d+$")


def run_tool(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)}:\n{output}"
    return output


def problems_of(expr: str, exported: Series) -> list[str]:
    """What in `expr` Paperwire does not export: a series, a label, a label's value, or a
    label it groups by that none of its series has."""
    found = selectors(expr)
    if not found:
        return ["reads no series"]
    problems: list[str] = []
    labels_read = set(TARGET_LABELS)
    for selector in found:
        if selector.name in PROMETHEUS_SERIES:
            labels_read |= PROMETHEUS_SERIES[selector.name]
            continue
        labels = exported.get(selector.name)
        if labels is None:
            problems.append(f"{selector.name} is not a series Paperwire exports")
            continue
        labels_read |= labels.keys()
        for matcher in selector.matchers:
            if matcher.label in TARGET_LABELS:
                continue
            if matcher.label not in labels:
                problems.append(f"{selector.name} has no label {matcher.label}")
            elif matcher.op == "=" and matcher.value not in labels[matcher.label]:
                problems.append(f"{selector.name}{{{matcher.label}}} is never {matcher.value!r}")
    problems += [
        f"no series has the label {label}" for label in grouping_labels(expr) - labels_read
    ]
    return problems


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool")


@pytest.fixture
def exported(sqlite_store: Store, redis_url: str, tmp_path: Path) -> Series:
    with serving_metrics(sqlite_store, redis_url, tmp_path, now=NOW) as url:
        return exported_series(url)


# -- Prometheus: config and rules, checked by promtool ------------------------------------------


def test_promtool_finds_the_alert_rules_valid_with_every_lint(promtool: str) -> None:
    output = run_tool(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES_FILE))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output
    assert {rule["alert"] for rule in alert_rules()} >= REQUIRED_ALERTS
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_promtool_finds_the_config_and_the_rule_files_it_names_valid(
    promtool: str, tmp_path: Path
) -> None:
    output = run_tool(promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert "SUCCESS" in output
    # In full, files included, laid out as in the container; the token file is a Docker
    # secret there, and here a file of the test.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (web,) = [job for job in config["scrape_configs"] if job["job_name"] == "paperwire-web"]
    secret = web["authorization"]["credentials_file"]
    assert secret == "/run/secrets/metrics_token"
    token = tmp_path / "metrics_token"
    token.write_text("a-token\n")
    shutil.copytree(MONITORING / "rules", tmp_path / "rules")
    copy = tmp_path / "prometheus.yml"
    copy.write_text(PROMETHEUS_CONFIG.read_text().replace(secret, str(token)))
    output = run_tool(promtool, "check", "config", "--lint=all", "--lint-fatal", str(copy))
    assert "SUCCESS: 1 rule files found" in output
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_the_dashboard_queries_are_promql_that_promtool_accepts(
    promtool: str, tmp_path: Path
) -> None:
    """Each query as a recording rule: promtool parses every expression it is given."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr}
        for number, (_title, expr) in enumerate(dashboard_queries())
    ]
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_tool(promtool, "check", "rules", str(checked))
    assert f"SUCCESS: {len(rules)} rules found" in output
    # And it can fail: a query that is not PromQL.
    broken = {"record": "dashboard:broken", "expr": "sum by (le (rate(x[2m]))"}
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [broken]}]}))
    refused = subprocess.run([promtool, "check", "rules", str(checked)], capture_output=True)
    assert refused.returncode != 0


# -- What the queries name, against a real scrape -----------------------------------------------


def test_every_dashboard_query_names_only_what_paperwire_exports(exported: Series) -> None:
    queries = dashboard_queries()
    assert queries
    for title, expr in queries:
        assert problems_of(expr, exported) == [], f"{title}: {expr}"
    read = {selector.name for _, expr in queries for selector in selectors(expr)}
    for topic, series in DASHBOARD_TOPICS.items():
        assert series in read, topic
    latency = [expr for _, expr in queries if "paperwire_send_duration_seconds_bucket" in expr]
    assert any(expr.startswith("histogram_quantile(0.95,") for expr in latency)


def test_every_alert_rule_names_only_what_paperwire_exports(exported: Series) -> None:
    for rule in alert_rules():
        assert problems_of(rule["expr"], exported) == [], rule["alert"]


def test_the_check_finds_a_wrong_name_label_or_value(exported: Series) -> None:
    """The checks above can fail: each of these is a slip a query could make."""
    assert problems_of('paperwire_issues{status="sent"}', exported) == []
    for wrong in (
        "paperwire_issue",  # misspelt
        "paperwire_send_duration_seconds",  # a histogram's name is not a series
        "paperwire_digests_sent",  # a counter's series ends in _total
        'paperwire_issues{state="sent"}',
        'paperwire_issues{status="delivered"}',
        'paperwire_mail_events_today{kind="complaints"}',
        "sum by (klass) (rate(paperwire_smtp_replies_total[2m]))",
        "vector(1)",
    ):
        assert problems_of(wrong, exported) != [], wrong


# -- Grafana: the provisioning and the dashboard ------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _grafana_mounts() -> dict[str, str]:
    """The grafana service's bind mounts: container path → path in the repository."""
    volumes = _yaml(COMPOSE_FILE)["services"]["grafana"]["volumes"]
    mounts = [volume.split(":") for volume in volumes if volume.startswith("./")]
    return {target: source for source, target, *_mode in mounts}


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder() -> None:
    mounts = _grafana_mounts()
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    (datasource,) = _yaml(GRAFANA / "provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = _yaml(GRAFANA / "provisioning/dashboards/paperwire.yml")["providers"]
    assert provider["type"] == "file"
    dashboards_folder = ROOT / mounts[provider["options"]["path"]]
    assert DASHBOARD_FILE.parent == dashboards_folder.resolve()
    assert [path.name for path in dashboards_folder.iterdir()] == [DASHBOARD_FILE.name]


def test_the_dashboard_is_json_grafana_provisions_with_a_query_in_every_panel() -> None:
    board = dashboard()
    (datasource,) = _yaml(GRAFANA / "provisioning/datasources/prometheus.yml")["datasources"]
    expected_source = {"type": "prometheus", "uid": datasource["uid"]}
    assert board["uid"] and board["title"] == "Paperwire"
    assert isinstance(board["schemaVersion"], int) and "id" not in board
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels) >= len(DASHBOARD_TOPICS)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        title = panel["title"]
        assert panel["type"] in ("timeseries", "stat", "bargauge"), title
        assert panel["datasource"] == expected_source, title
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, title
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{title} overlaps another panel"
        cells |= area
        targets = panel["targets"]
        assert targets, f"{title} has no query"
        assert len({target["refId"] for target in targets}) == len(targets), title
        for target in targets:
            assert target["expr"].strip() and target["datasource"] == expected_source, title


# -- Compose: the monitoring profile ------------------------------------------------------------


def test_compose_config_with_the_monitoring_profile_lists_prometheus_and_grafana(
    tmp_path: Path,
) -> None:
    command = compose_command()
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    # A clean environment, so that no PAPERWIRE_* or COMPOSE_* variable of the shell leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "--profile", "monitoring", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert {"web", "worker", "prometheus", "grafana"} <= set(rendered["services"])
    assert {"metrics_token", "grafana_admin_password"} <= set(rendered["secrets"])


def test_the_monitoring_services_are_pinned_on_loopback_with_their_secrets_from_files() -> None:
    compose = _yaml(COMPOSE_FILE)
    services = compose["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        assert RELEASE_TAG.search(service["image"]), service["image"]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name
        assert service["healthcheck"]["test"], name
        assert "environment" not in service and "env_file" not in service, name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith("./") or (ROOT / source).exists(), volume
    assert services["prometheus"]["image"].startswith("prom/prometheus:v2.")
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")
    for secret in compose["secrets"].values():
        assert secret == {"file": f"./secrets/{Path(secret['file']).name}"}
    # Prometheus sends the token of its secret; Grafana's admin password is its secret's file.
    assert services["prometheus"]["secrets"] == ["metrics_token"]
    assert services["grafana"]["secrets"] == ["grafana_admin_password"]
    grafana_ini = configparser.ConfigParser(interpolation=None)
    grafana_ini.read_string((GRAFANA / "grafana.ini").read_text())
    password = grafana_ini["security"]["admin_password"]
    assert password == "$__file{/run/secrets/grafana_admin_password}"
    assert _grafana_mounts()["/etc/grafana/grafana.ini"] == "./monitoring/grafana/grafana.ini"
    assert "./monitoring/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    assert yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"] == ["rules/*.yml"]


def test_prometheus_scrapes_the_web_and_worker_services_where_they_listen() -> None:
    services = _yaml(COMPOSE_FILE)["services"]
    jobs = {job["job_name"]: job for job in _yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    web_command = services["web"]["command"]
    web_port = web_command[web_command.index("--port") + 1]
    assert jobs["paperwire-web"]["static_configs"] == [{"targets": [f"web:{web_port}"]}]
    # Every worker, however many `--scale worker=N` runs, on the port the setting defaults to.
    (workers,) = jobs["paperwire-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["type"] == "A"
    assert workers["port"] == Settings.model_fields["worker_metrics_port"].default
    # The workers listen on every address of their container, where Prometheus reaches them.
    assert re.search(r"(?m)^PAPERWIRE_WORKER_METRICS_HOST=0\.0\.0\.0$", ENV_EXAMPLE.read_text())
