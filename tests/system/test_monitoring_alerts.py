"""The alert rules at work: promtool's unit tests feed them series minute by minute and say
when each alert fires and when it must not; then Debian's prometheus, with the profile's own
config pointed at 127.0.0.1, scrapes a real web app through its bearer token and a worker's
registry, loads the rules, and answers every dashboard query and rule expression."""

import subprocess
from pathlib import Path
from typing import Any

import yaml

from service.observability.sending import SENDING_REGISTRY
from service.store import Store
from tests.support.factories import NOW
from tests.support.monitoring import (
    METRICS_TOKEN,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    alert_rules,
    dashboard_queries,
    debian_tool,
    prometheus_server,
    serving_metrics,
    without_annotations,
)
from tests.support.services import HOST, free_port, wait_until

MINUTE = 60
DAY_MINUTES = 24 * 60
Case = dict[str, Any]
# A rule's lastEvaluation before its first evaluation.
NEVER = "0001-01-01T00:00:00Z"


def series(name: str, values: str) -> dict[str, str]:
    return {"series": name, "values": values}


def expect(minute: int, alert: str, *labels: dict[str, str]) -> dict[str, Any]:
    """At `minute`, `alert` fires once for each of `labels` (none: it does not fire)."""
    return {
        "eval_time": f"{minute}m",
        "alertname": alert,
        "exp_alerts": [{"exp_labels": dict(label)} for label in labels],
    }


def late_issue_cases() -> list[Case]:
    # The oldest unsent issue waits one more minute each minute.
    waiting = series("paperwire_oldest_unsent_issue_age_seconds", "0+60x120")
    # One that waits 59 minutes, then is sent: the figure falls to 0.
    sent_in_time = series("paperwire_oldest_unsent_issue_age_seconds", "0+60x59 0x60")
    critical = {"severity": "critical"}
    return [
        {
            "name": "an issue an hour late fires after five minutes more",
            "input_series": [waiting],
            "alert_rule_test": [
                expect(60, "PaperwireIssuesLate"),
                expect(64, "PaperwireIssuesLate"),
                expect(70, "PaperwireIssuesLate", critical),
            ],
        },
        {
            "name": "an issue sent within the hour does not",
            "input_series": [sent_in_time],
            "alert_rule_test": [expect(70, "PaperwireIssuesLate")],
        },
    ]


def complaint_cases() -> list[Case]:
    """Day one sends 1000 issues; at midnight UTC today's figures start again from 0."""
    sent = series('paperwire_issues{status="sent"}', "0+1x999 1000x439 10+1x120")
    quiet_day = f"0x{DAY_MINUTES - 1}"

    def complaints(count: int) -> dict[str, str]:
        return series('paperwire_mail_events_today{kind="complaint"}', f"{quiet_day} {count}x120")

    return [
        {
            # One complaint about yesterday's 1000 issues is 0.1%, not one in today's 110.
            "name": "a complaint early in the UTC day is reckoned against yesterday's issues",
            "input_series": [sent, complaints(1)],
            "alert_rule_test": [expect(DAY_MINUTES + 100, "PaperwireComplaintRateHigh")],
        },
        {
            "name": "three complaints a thousand fire after fifteen minutes",
            "input_series": [sent, complaints(3)],
            "alert_rule_test": [
                expect(DAY_MINUTES + 10, "PaperwireComplaintRateHigh"),
                expect(DAY_MINUTES + 20, "PaperwireComplaintRateHigh", {"severity": "warning"}),
            ],
        },
        {
            "name": "a complaint when nothing was sent for a day is no rate",
            "input_series": [
                series('paperwire_issues{status="sent"}', "0x120"),
                series('paperwire_mail_events_today{kind="complaint"}', "1x120"),
            ],
            "alert_rule_test": [expect(100, "PaperwireComplaintRateHigh")],
        },
    ]


def job_cases() -> list[Case]:
    fetched = "paperwire_paper_fetch_last_timestamp_seconds"
    beat = "paperwire_beat_job_last_success_timestamp_seconds"
    redis_up = series('paperwire_collector_up{source="redis"}', "1x1600")
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    return [
        {
            # arxiv last fetched at 0 and never again; hf again at the end of the first day.
            "name": "a source not fetched for 26 hours fires, one fetched today does not",
            "input_series": [
                series(f'{fetched}{{source="arxiv"}}', "0x1600"),
                series(f'{fetched}{{source="hf"}}', f"0x{DAY_MINUTES - 1} 86400x160"),
            ],
            "alert_rule_test": [
                expect(26 * 60 + 10, "PaperwireNoPaperFetch"),
                expect(26 * 60 + 20, "PaperwireNoPaperFetch", {**warning, "source": "arxiv"}),
            ],
        },
        {
            # enqueue-due-digests succeeds each quarter hour up to minute 60, then stops.
            "name": "no enqueue for an hour fires; other jobs' ages do not count",
            "input_series": [
                series(
                    f'{beat}{{job="enqueue-due-digests"}}', "0x14 900x14 1800x14 2700x14 3600x100"
                ),
                series(f'{beat}{{job="prune-pending-signups"}}', "0x180"),
            ],
            "alert_rule_test": [
                expect(125, "PaperwireSchedulerStalled"),
                expect(
                    130, "PaperwireSchedulerStalled", {**critical, "job": "enqueue-due-digests"}
                ),
            ],
        },
        {
            "name": "a Redis that answers without any record: after an hour, after a day",
            "input_series": [redis_up],
            "alert_rule_test": [
                expect(50, "PaperwireSchedulerNotRecorded"),
                expect(
                    70, "PaperwireSchedulerNotRecorded", {**critical, "job": "enqueue-due-digests"}
                ),
                expect(25 * 60, "PaperwireNoPaperFetchRecorded"),
                expect(26 * 60 + 10, "PaperwireNoPaperFetchRecorded", warning),
                expect(26 * 60 + 10, "PaperwireNoPaperFetch"),
            ],
        },
        {
            "name": "no record while Redis cannot be read is the collector's alert alone",
            "input_series": [series('paperwire_collector_up{source="redis"}', "0x1600")],
            "alert_rule_test": [
                expect(70, "PaperwireSchedulerNotRecorded"),
                expect(26 * 60 + 10, "PaperwireNoPaperFetchRecorded"),
                expect(20, "PaperwireMetricsCollectorDown", {**critical, "source": "redis"}),
            ],
        },
    ]


def scrape_cases() -> list[Case]:
    return [
        {
            "name": "a source the collector cannot read, a target that does not answer",
            "input_series": [
                series('paperwire_collector_up{source="ledger"}', "1x10 0x20"),
                series('paperwire_collector_up{source="redis"}', "1x30"),
                series('up{job="paperwire-worker", instance="10.0.0.5:9808"}', "1x10 0x20"),
                series('up{job="paperwire-web", instance="web:8000"}', "1x30"),
                series('up{job="prometheus", instance="localhost:9090"}', "0x30"),
            ],
            "alert_rule_test": [
                expect(14, "PaperwireMetricsCollectorDown"),
                expect(14, "PaperwireTargetDown"),
                expect(
                    20,
                    "PaperwireMetricsCollectorDown",
                    {"severity": "critical", "source": "ledger"},
                ),
                expect(
                    20,
                    "PaperwireTargetDown",
                    {
                        "severity": "critical",
                        "job": "paperwire-worker",
                        "instance": "10.0.0.5:9808",
                    },
                ),
            ],
        },
    ]


def test_each_alert_fires_when_it_should_and_not_otherwise(tmp_path: Path) -> None:
    promtool = debian_tool("promtool")
    rules = tmp_path / "rules.yml"
    rules.write_text(without_annotations(RULES_FILE.read_text()))
    cases = late_issue_cases() + complaint_cases() + job_cases() + scrape_cases()
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alert_rules()}
    for case in cases:
        case["interval"] = "1m"
    unit_tests = tmp_path / "rules_test.yml"
    unit_tests.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": cases})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(unit_tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def local_config(web_port: int, worker_port: int, token_file: Path) -> dict[str, Any]:
    """The profile's config with only what the compose network gives changed: the targets
    (web and worker on 127.0.0.1), the token's file, the rules' folder; scrapes each second."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_FILE.parent / "*.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["paperwire-web"]["static_configs"] = [{"targets": [f"{HOST}:{web_port}"]}]
    jobs["paperwire-web"]["authorization"]["credentials_file"] = str(token_file)
    del jobs["paperwire-worker"]["dns_sd_configs"]
    jobs["paperwire-worker"]["static_configs"] = [{"targets": [f"{HOST}:{worker_port}"]}]
    config["scrape_configs"] = [jobs["paperwire-web"], jobs["paperwire-worker"]]
    return config


def test_prometheus_scrapes_with_the_token_loads_the_rules_and_answers_every_query(
    sqlite_store: Store, redis_url: str, tmp_path: Path
) -> None:
    from prometheus_client import start_http_server

    token_file = tmp_path / "metrics_token"
    token_file.write_text(METRICS_TOKEN + "\n")  # as `openssl rand -hex 32 >` writes it
    worker_port = free_port()
    worker, _thread = start_http_server(worker_port, addr=HOST, registry=SENDING_REGISTRY)
    try:
        with serving_metrics(sqlite_store, redis_url, tmp_path, now=NOW) as web_url:
            web_port = int(web_url.rsplit(":", 1)[1])
            config = local_config(web_port, worker_port, token_file)
            with prometheus_server(config, tmp_path / "prometheus") as prometheus:

                def both_scraped() -> bool:
                    up = prometheus.query("up == 1")
                    return {sample["metric"]["job"] for sample in up} == {
                        "paperwire-web",
                        "paperwire-worker",
                    }

                wait_until(both_scraped, timeout=30, what="both targets up")
                assert prometheus.query('paperwire_issues{status="sent"}')
                assert prometheus.query("paperwire_send_duration_seconds_bucket")

                def rules_evaluated() -> bool:
                    return all(rule["lastEvaluation"] != NEVER for rule in prometheus.rules())

                wait_until(rules_evaluated, timeout=30, what="every rule evaluated")
                loaded = prometheus.rules()
                assert {rule["name"] for rule in loaded} == {r["alert"] for r in alert_rules()}
                for rule in loaded:
                    assert rule["health"] == "ok", rule
                for _title, expr in dashboard_queries():
                    prometheus.query(expr)
                for rule in alert_rules():
                    prometheus.query(rule["expr"])
    finally:
        worker.shutdown()
        worker.server_close()
