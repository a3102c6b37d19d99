"""What the tests of monitoring/ share: its files read as Prometheus and Grafana read them,
Debian's promtool and prometheus (the `prometheus` package), the series Paperwire exports as
a scrape reads them, and a Prometheus server on 127.0.0.1.

The exported series come from real expositions: the web app's /metrics over HTTP (with Redis
holding a record of every beat job and paper source, so that every family has its series) and
the delivery pipeline's registry, which a worker's port serves summed over its processes.
"""

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.observability.job_records import (
    FILE_SOURCE,
    LIVE_SOURCES,
    record_beat_success,
    record_paper_fetch,
)
from service.observability.sending import SENDING_REGISTRY
from service.store import Store
from tests.support.factories import make_settings
from tests.support.services import (
    HOST,
    fail_or_skip,
    free_port,
    real_clock_environment,
    stop_process,
    wait_until,
)
from tests.support.web_server import serve
from workers.celery_app import beat_schedule

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
RULES_FILE = MONITORING / "rules" / "paperwire.yml"
GRAFANA = MONITORING / "grafana"
DASHBOARD_FILE = GRAFANA / "dashboards" / "paperwire.json"
METRICS_TOKEN = "scrape-token-for-prometheus-0123456789"

# What Grafana puts in place of its variables before a query reaches Prometheus: durations of
# the dashboard's scale (four of the datasource's 30 s scrape interval for $__rate_interval).
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "30s", "$__range": "6h"}

# Series label values by label, by series name (a histogram's _bucket, _sum and _count apart).
Series = dict[str, dict[str, set[str]]]


def debian_tool(name: str) -> str:
    """The path of promtool or prometheus, from Debian's `prometheus` package."""
    path = shutil.which(name)
    if path is None:
        fail_or_skip(f"{name} is missing (apt-get install prometheus)")
    return path


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """Each panel's queries as Prometheus receives them: (panel title, PromQL)."""
    queries: list[tuple[str, str]] = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = str(target.get("expr", ""))
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable Grafana would not fill in"
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def series_of(exposition: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return series


@contextmanager
def serving_metrics(
    store: Store, redis_url: str, tmp_path: Path, *, now: datetime
) -> Iterator[str]:
    """The web app on 127.0.0.1 with /metrics behind METRICS_TOKEN, its Redis holding a success
    of every beat job and a fetch from every paper source at `now`; its base URL."""
    settings = make_settings(
        database_url=str(store.url),
        mail_url=f"file://{tmp_path / 'outbox'}",
        redis_url=redis_url,
        metrics_token=METRICS_TOKEN,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        for job in beat_schedule(settings):
            record_beat_success(client, job, at=now)
        for source in (*LIVE_SOURCES, FILE_SOURCE):
            counts = {"new": 3, "updated": 1, "rejected": 0}
            record_paper_fetch(client, source, counts, at=now)
    finally:
        client.close()
    port = free_port()
    for _ in serve(settings, store, port):
        url = f"http://{HOST}:{port}"
        # A request first, so that the request counters have their series.
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        yield url


def exported_series(web_url: str) -> Series:
    """The series of a scrape of the web app's /metrics and of a worker's registry."""
    answer = httpx.get(
        f"{web_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200
    series = series_of(answer.text)
    series.update(series_of(generate_latest(SENDING_REGISTRY).decode()))
    return series


@dataclass
class PrometheusServer:
    """A Prometheus on 127.0.0.1, asked through its HTTP API."""

    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of `expr` now; an error of Prometheus fails."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        result = body["data"]["result"]
        return result if isinstance(result, list) else [{"value": result}]

    def rules(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=10)
        assert answer.status_code == 200
        return [rule for group in answer.json()["data"]["groups"] for rule in group["rules"]]


@contextmanager
def prometheus_server(config: dict[str, Any], folder: Path) -> Iterator[PrometheusServer]:
    """Debian's prometheus with `config`, its data in `folder`, until the block ends."""
    binary = debian_tool("prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log_path = folder / "prometheus.log"
    url = f"http://{HOST}:{free_port()}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=real_clock_environment(),
            start_new_session=True,
        )

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=30, what="prometheus", log=lambda: log_path.read_text())
        yield PrometheusServer(url)
    finally:
        stop_process(process)


def without_annotations(rules_text: str) -> str:
    """The rules file with no annotations: promtool's unit tests compare an alert's labels and
    annotations alike, and the tests are about when an alert fires, not its wording."""
    data = yaml.safe_load(rules_text)
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(data)
