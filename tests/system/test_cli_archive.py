"""The CLI's side of the archive and the feed, run as a person runs it (the installed `paperwire`
command in a subprocess): a feed-only subscriber added with `--feed-only` gets no email from
`digest run`, and `subscribers show --json` names their archive and feed, which the web app
over the same database serves."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest

from service.store import Store
from tests.support.cli_runner import ISSUE_DATE, Run
from tests.support.factories import make_settings
from tests.support.services import free_port
from tests.support.web_server import serve

SECRET_KEY = "cli-archive-secret-key"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def cli(seeded: Run, port: int) -> Run:
    """`paperwire` with the secret key and the address of the web app the test serves."""

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return seeded(
            *args,
            PAPERWIRE_SECRET_KEY=SECRET_KEY,
            PAPERWIRE_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            **kwargs,
        )

    return run


@pytest.fixture
def web_app(tmp_path: Path, port: int) -> Iterator[str]:
    """The web app over the CLI's store, with the CLI's secret key and address."""
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    settings = make_settings(
        database_url=database_url,
        public_base_url=f"http://127.0.0.1:{port}",
        secret_key=SECRET_KEY,
        mail_url=f"file://{tmp_path / 'outbox'}",
        redis_url="",
    )
    store = Store(database_url)
    try:
        for _ in serve(settings, store, port):
            yield settings.public_base_url
    finally:
        store.close()


def test_a_feed_only_subscriber_gets_no_email_and_show_json_names_a_working_feed(
    cli: Run, tmp_path: Path, web_app: str
) -> None:
    cli("subscribers", "add", "ada@example.org", "-k", "diffusion models", "--feed-only")
    cli("subscribers", "add", "bob@example.org", "-k", "diffusion models")

    run = cli("digest", "run", "--date", ISSUE_DATE)
    shown = cli("subscribers", "show", "ada@example.org", "--json")
    human = cli("subscribers", "show", "ada@example.org")

    messages = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(messages) == 1 and "bob@example.org" in messages[0].read_text()
    assert "sent" in run.stdout
    data = json.loads(shown.stdout)
    assert data["email"] == "ada@example.org" and data["status"] == "confirmed"
    assert data["feed_only"] is True
    assert [profile["interests"]["keywords"] for profile in data["profiles"]] == [
        ["diffusion models"]
    ]
    assert data["schedule"]["frequency"] == "daily"
    assert data["confirmed_at"] is not None and data["unsubscribed_at"] is None
    assert "link_key" not in shown.stdout
    assert data["archive_url"].startswith(f"{web_app}/archive/")
    assert data["feed_url"].startswith(f"{web_app}/feed/")
    # Without --json the output is the human one, as before.
    assert human.stdout.startswith("ada@example.org (id ")
    assert "interests: “diffusion models”" in human.stdout

    archive = httpx.get(data["archive_url"], timeout=10)
    feed = feedparser.parse(data["feed_url"])
    assert archive.status_code == 200 and f'<h2 id="issue-{ISSUE_DATE}">' in archive.text
    assert feed.status == 200 and not feed.bozo
    (entry,) = feed.entries
    assert entry.id.endswith(f"{ISSUE_DATE}:digest/{data['id']}")
    assert "Why: " in entry.content[0].value


def test_show_json_of_nobody_is_one_line(cli: Run) -> None:
    result = cli("subscribers", "show", "nobody@example.org", "--json", check_exit=2)
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "no subscriber" in result.stderr
