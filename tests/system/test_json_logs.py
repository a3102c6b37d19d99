"""JSON log lines from real processes, read line by line: `paperwire digest run` into an SMTP
sink that refuses one reader, `paperwire serve` answering link URLs with tokens, and a
`paperwire worker` delivering a day. Every line is one JSON object; none holds an address or a
token."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from service.models import DeliveryStatus
from service.signup.links import feedback_urls, issue_url, subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.cli_runner import ISSUE_DATE, PAPERWIRE, Run
from tests.support.factories import NOW, add_subscriber, make_paper, make_settings, send_issue
from tests.support.processes import CELERY_SHUTDOWN_LINE, due_now, json_lines, paperwire_worker
from tests.support.services import celery_client, free_port, stop_process, wait_until
from tests.support.smtp_sink import SmtpSink

SECRET_KEY = "json-logs-test-secret"
JSON_LOGS = {"PAPERWIRE_LOG_FORMAT": "json"}


def assert_nothing_personal(text: str, *secrets: str) -> None:
    assert "@example.org" not in text and "%40example.org" not in text
    for secret in secrets:
        assert secret not in text


# -- A command ----------------------------------------------------------------------------------


def test_a_digest_run_logs_json_lines_without_addresses(seeded: Run, smtp_sink: SmtpSink) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    seeded("subscribers", "add", "bob@example.org", "-k", "diffusion models")
    smtp_sink.fail_next("RCPT", "550 5.1.1 <ada@example.org>: no such user here")

    result = seeded(
        "digest",
        "run",
        "--date",
        ISSUE_DATE,
        check_exit=1,  # someone was left without their issue
        PAPERWIRE_MAIL_URL=smtp_sink.url,
        **JSON_LOGS,
    )

    lines = json_lines(result.stderr)
    (batch,) = [line for line in lines if line["message"].startswith("batch of")]
    assert (batch["issues"], batch["sent"], batch["refused"]) == (2, 1, 1)
    assert batch["logger"] == "service.delivery.pipeline" and batch["duration_ms"] >= 0
    (refused,) = [line for line in lines if line.get("outcome") == "refused"]
    assert refused["subscriber_id"] in (1, 2) and "[address]" in refused["message"]
    assert_nothing_personal(result.stderr)
    # The results stay on stdout, as in text.
    assert "refused" in result.stdout and "{" not in result.stdout


def test_a_commands_error_is_a_json_line_too(seeded: Run) -> None:
    seeded("subscribers", "add", "ada@example.org")
    again = seeded("subscribers", "add", "ada@example.org", check_exit=2, **JSON_LOGS)
    (line,) = json_lines(again.stderr)
    assert (line["level"], line["logger"]) == ("ERROR", "service.cli")
    assert line["message"] == "[address] is already subscribed"


# -- The web app --------------------------------------------------------------------------------


@contextmanager
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`paperwire serve` with its output in a file; SIGTERM on the way out."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PAPERWIRE, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answered() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answered, timeout=30, what="paperwire serve", log=log_path.read_text)
        yield url, log_path
    finally:
        stop_process(process)


def test_the_web_app_logs_one_line_per_request_with_its_route_never_its_path(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'web.db'}"
    settings = make_settings(secret_key=SECRET_KEY, database_url=database)
    store = Store(database)
    store.upgrade()
    ada = add_subscriber(store, "ada@example.org")
    store.upsert_papers([make_paper()], now=NOW)
    send_issue(store, ada, NOW.date(), paper_ids=[make_paper().id])  # for its archived copy
    store.close()
    links = {
        "/u/{token}": subscriber_url(TokenPurpose.UNSUBSCRIBE, ada, settings=settings, now=NOW),
        "/m/{token}": subscriber_url(TokenPurpose.MANAGE, ada, settings=settings, now=NOW),
        "/archive/{token}": subscriber_url(
            TokenPurpose.ARCHIVE_LIST, ada, settings=settings, now=NOW
        ),
        "/feed/{token}": subscriber_url(TokenPurpose.FEED, ada, settings=settings, now=NOW),
        "/a/{token}": issue_url(ada, NOW.date(), settings=settings, now=NOW),
        "/f/{token}": feedback_urls(ada, ["2511.00001"], settings=settings, now=NOW)["2511.00001"],
    }
    paths = {template: urlsplit(url).path for template, url in links.items()}
    tokens = [path.rsplit("/", 1)[1] for path in paths.values()]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")},
        "PAPERWIRE_ENV_FILE": "",
        "PAPERWIRE_DATABASE_URL": database,
        "PAPERWIRE_MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "PAPERWIRE_SECRET_KEY": SECRET_KEY,
        "PAPERWIRE_PUBLIC_BASE_URL": "https://paperwire.test",
        "PAPERWIRE_REDIS_URL": "",
        "PAPERWIRE_SIGNUP_ANSWER_SECONDS": "0",
        **JSON_LOGS,
    }

    with served(tmp_path, env) as (url, log_path), httpx.Client(base_url=url) as client:
        answers = {template: client.get(path) for template, path in paths.items()}
        given = client.get(paths["/u/{token}"], headers={"X-Request-ID": "edge-7f3a:1.2"})
        insane = client.get("/u/not-a-real-token-at-all", headers={"X-Request-ID": "<b> x"})
        unknown = client.get("/somewhere/ada@example.org")
        head = client.head(paths["/m/{token}"])
        not_allowed = client.delete(paths["/u/{token}"])
        signup = client.post(
            "/api/signup", json={"email": "grace@example.org", "interests": ["diffusion"]}
        )
        client.get("/static/site.css")
        client.get("/openapi.json")
    text = log_path.read_text()

    assert {t: a.status_code for t, a in answers.items()} == dict.fromkeys(answers, 200)
    assert signup.status_code == 202 and unknown.status_code == 404
    lines = json_lines(text)
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    access = {line["request_id"]: line for line in lines if "route" in line}
    by_route = {line["route"] for line in access.values()}
    expected = {*paths, "/api/signup", "/healthz", "/static/{path}", "/openapi.json", "unmatched"}
    assert by_route >= expected
    assert access["edge-7f3a:1.2"]["route"] == "/u/{token}"
    assert given.headers["X-Request-ID"] == "edge-7f3a:1.2"
    made = insane.headers["X-Request-ID"]
    assert made != "<b> x" and access[made]["status"] == 400
    headed = access[head.headers["X-Request-ID"]]
    assert (headed["method"], headed["route"], headed["status"]) == ("HEAD", "/m/{token}", 200)
    refused = access[not_allowed.headers["X-Request-ID"]]
    assert (refused["method"], refused["route"], refused["status"]) == ("DELETE", "/u/{token}", 405)
    for template, answer in answers.items():
        line = access[answer.headers["X-Request-ID"]]
        assert (line["route"], line["status"], line["method"]) == (template, 200, "GET")
        assert line["subscriber_id"] == ada.id and line["duration_ms"] >= 0
    assert_nothing_personal(text, *tokens)


# -- A worker -----------------------------------------------------------------------------------


def test_a_worker_logs_json_lines_with_the_task_id(
    redis_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'worker.db'}"
    store = Store(database)
    store.upgrade()
    issue_date = due_now(store, 3)
    smtp_sink.fail_next("RCPT", "451 4.2.1 <reader0@example.org> try again later")
    worker = paperwire_worker(
        redis_url,
        tmp_path / "worker",
        {
            "PAPERWIRE_ENV_FILE": "",
            "PAPERWIRE_DATABASE_URL": database,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
            "PAPERWIRE_SECRET_KEY": SECRET_KEY,
            **JSON_LOGS,
        },
    )
    try:
        worker.start()
        worker.wait_ready()
        with celery_client(redis_url) as client:
            task = client.send_task("paperwire.run_digest_day", args=[issue_date.isoformat()])
        worker.wait_for_log("succeeded in", timeout=60)
    finally:
        worker.stop()
        store.close()
    text = worker.log_text()

    # Celery's own lines too, with no banner; the warning of a worker run as root as well.
    lines = json_lines(text, printed=(CELERY_SHUTDOWN_LINE,))
    assert any(line["logger"].startswith("celery") for line in lines)
    (batch,) = [line for line in lines if line["message"].startswith("batch of")]
    assert batch["task_id"] == task.id and (batch["sent"], batch["retry"]) == (2, 1)
    (retry,) = [line for line in lines if line.get("outcome") == "retry"]
    assert retry["task_id"] == task.id
    assert_nothing_personal(text)
    store = Store(database)
    try:
        deliveries = {
            d.subscriber_id: d.status for d in store.list_deliveries(issue_date=issue_date)
        }
    finally:
        store.close()
    assert deliveries[retry["subscriber_id"]] is DeliveryStatus.RETRY
    assert sorted(deliveries.values()) == [DeliveryStatus.RETRY, *[DeliveryStatus.SENT] * 2]
