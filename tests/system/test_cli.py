"""The admin CLI, run as a person runs it: the installed `paperwire` command in a subprocess
(fixtures in tests/support/cli_runner.py). The digest, preview and delivery commands, whose
subject is dates, are in test_cli_digest.py."""

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.settings import PROJECT_ROOT, Settings
from service.store import Store
from tests.support.cli_runner import ISSUE_DATE, PAPERWIRE, SAMPLE, SEEN_AT, Run
from tests.support.factories import make_settings
from tests.support.services import free_port, wait_until


def test_import_reports_rejected_lines_and_exits_non_zero(paperwire: Run, tmp_path: Path) -> None:
    paperwire("db", "upgrade")
    papers = tmp_path / "papers.jsonl"
    papers.write_text('{"id": "a1", "title": "Fine"}\n{"id": "b2"}\nnot json\n')

    result = paperwire("papers", "import", str(papers), check_exit=1)

    assert "1 new, 0 updated, 2 rejected" in result.stdout
    assert f"{papers}:2: rejected: title: Field required" in result.stderr
    assert f"{papers}:3: rejected: not JSON" in result.stderr
    again = paperwire("papers", "import", str(papers), check_exit=1)
    assert "0 new, 1 updated" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("subscribers", "add", "not-an-address", "-k", "x"), "invalid email address"),
        (("subscribers", "add", "a@example.org", "--time-zone", "Mars/Base"), "unknown time zone"),
        (("papers", "import", "missing.jsonl"), "no such file"),
        (("digest", "run", "--date", "25/11/2026"), "invalid date"),
        (("papers", "import", str(SAMPLE), "--seen-at", "yesterday"), "invalid date-time"),
        (("subscribers", "show", "nobody@example.org"), "no subscriber"),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit(
    seeded: Run, args: tuple[str, ...], message: str
) -> None:
    result = seeded(*args, check_exit=2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


ADD = ("subscribers", "add", "ada@example.org")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((*ADD, "--hour", "25"), ("--hour", "0 to 23")),
        ((*ADD, "--hour", "eight"), ("--hour", "0 to 23")),
        ((*ADD, "--weekday", "funday"), ("--weekday", "'funday'", "'mon'", "'sun'")),
        ((*ADD, "--frequency", "hourly"), ("--frequency", "'daily'", "'weekly'")),
        ((*ADD, "--trending-weight", "2"), ("--trending-weight", "0.0 to 1.0")),
        ((*ADD, "--hour"), ("--hour", "requires an argument")),
        ((*ADD, "--bogus"), ("--bogus", "paperwire subscribers add --help")),
        (("subscribers", "add"), ("'email'", "paperwire subscribers add --help")),
        (("subscribers", "show", "a@example.org", "b@example.org"), ("b@example.org",)),
        (("subscribers", "list", "--status", "gone"), ("--status", "'confirmed'")),
        (("subscribers", "frobnicate"), ("frobnicate", "paperwire subscribers --help")),
        (("deliveries", "list", "--status", "bogus"), ("--status", "'failed'", "'retry'")),
        (("papers", "fetch", "--source", "foo"), ("--source", "'hf'", "'arxiv'", "'all'")),
        (("papers", "list", "--limit", "0"), ("--limit", "at least 1")),
        (("rank", "-k", "x"), ("--papers", "paperwire rank --help")),
        (("frobnicate",), ("frobnicate", "paperwire --help")),
        # What was typed is quoted as it was, never read as rich markup.
        (("subscribers", "show", "[/x]@example.org"), ("'[/x]@example.org'",)),
        (("digest", "run", "--date", "[bold]x"), ("'[bold]x'",)),
    ],
)
def test_bad_usage_gets_one_line_naming_what_is_allowed(
    paperwire: Run, args: tuple[str, ...], named: tuple[str, ...]
) -> None:
    result = paperwire(*args, check_exit=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: "), line
    assert "╭" not in result.stderr and "Usage:" not in result.stderr
    for name in named:
        assert name in line, line
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("--help",), ("subscribers", "add", "--help")])
def test_help_still_works(paperwire: Run, args: tuple[str, ...]) -> None:
    result = paperwire(*args)
    assert "Usage:" in result.stdout and result.stderr == ""


def test_version_is_the_installed_package_version(paperwire: Run) -> None:
    result = paperwire("--version")
    assert result.stdout == f"paperwire {importlib.metadata.version('paperwire')}\n"


def test_the_command_line_is_built_without_the_digest_path_the_web_app_or_celery() -> None:
    # What `--help` and `--version` load: these would make them take most of a second.
    heavy = ("celery", "workers", "service.delivery", "service.web", "service.store", "sqlalchemy")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, service.cli.app; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [name for name in loaded if name.startswith(heavy)] == []


def test_a_store_without_schema_says_what_to_do(paperwire: Run) -> None:
    result = paperwire("subscribers", "list", check_exit=2)
    assert "paperwire db upgrade" in result.stderr


def test_subscribers_add_list_show_remove(seeded: Run) -> None:
    added = seeded(
        "subscribers",
        "add",
        "Ada@Example.org",
        "-k",
        "diffusion models",
        "--trending-weight",
        "0.2",
    )
    assert "added ada@example.org" in added.stdout
    assert seeded("subscribers", "add", "ada@example.org", check_exit=2).stderr.count("\n") == 1
    assert "ada@example.org" in seeded("subscribers", "list").stdout
    shown = seeded("subscribers", "show", "ada@example.org")
    assert "“diffusion models”" in shown.stdout and "confirmed" in shown.stdout
    seeded("subscribers", "remove", "ada@example.org", "--yes")
    assert "ada@example.org" not in seeded("subscribers", "list").stdout


def test_subscribers_add_with_liked_papers_authors_and_topics_and_show_them(seeded: Run) -> None:
    # Liked papers alone are interests enough; ids of the store as they are or as links.
    added = seeded(
        "subscribers",
        "add",
        "ada@example.org",
        "--like",
        "8d3b9b2bfaa0",
        "--like",
        "274b5038a8ec",
        "--author",
        "J. Müller",
        "--author",
        "Grace Hopper",
        "--exclude",
        "robotics",
    )
    assert "added ada@example.org" in added.stdout
    shown = seeded("subscribers", "show", "ada@example.org").stdout
    assert "interests: 2 liked papers" in shown
    assert "authors: “J. Müller”, “Grace Hopper”" in shown
    assert "excluded: “robotics”" in shown
    assert "liked: 2\n  8d3b9b2bfaa0  REINFORCE++: A Simple and Efficient Approach" in shown
    assert "  274b5038a8ec  Reinforcement Learning with Action Sequence" in shown
    assert "disliked: none" in shown
    exported = json.loads(seeded("subscribers", "export", "ada@example.org").stdout)
    assert exported["profiles"][0]["liked_papers"] == ["8d3b9b2bfaa0", "274b5038a8ec"]

    # A subscriber with none of them shows that too, and the rest as before.
    seeded("subscribers", "add", "bob@example.org", "-k", "graphs")
    plain = seeded("subscribers", "show", "bob@example.org").stdout
    assert "interests: “graphs”" in plain
    assert "authors: none" in plain and "liked: none" in plain


@pytest.mark.parametrize(
    "like", ["2501.99999", "https://huggingface.co/papers/2501.99999", "no such title"]
)
def test_subscribers_add_refuses_a_paper_the_store_lacks_in_one_line(
    seeded: Run, like: str
) -> None:
    refused = seeded(
        "subscribers",
        "add",
        "ada@example.org",
        "--like",
        "8d3b9b2bfaa0",
        "--like",
        like,
        check_exit=2,
    )
    assert f"No paper found for “{like}”" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "ada@example.org" not in seeded("subscribers", "list").stdout


def test_subscribers_export_and_erase(seeded: Run) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")

    exported = json.loads(seeded("subscribers", "export", "Ada@example.org").stdout)
    assert exported["subscriber"]["email"] == "ada@example.org"
    assert exported["profiles"][0]["keywords"] == ["diffusion models"]
    assert exported["deliveries"] == []
    (vouched,) = exported["subscriber"]["consent"]
    assert (vouched["event"], vouched["via"]) == ("confirmed", "admin CLI (subscribers add)")

    erased = seeded("subscribers", "erase", "ada@example.org", "--yes")
    assert erased.stdout.strip() == "erased ada@example.org"
    again = seeded("subscribers", "erase", "ada@example.org", "--yes", check_exit=2)
    assert again.stderr.count("\n") == 1 and "ada@example.org" in again.stderr
    assert seeded("subscribers", "export", "ada@example.org", check_exit=2).stdout == ""
    # Erased at the owner's request: only they can sign up again, not an admin.
    refused = seeded("subscribers", "add", "ada@example.org", check_exit=2)
    assert "erased" in refused.stderr


@pytest.mark.parametrize("leaves_by", [("erase", "--yes"), ("remove", "--yes")])
def test_an_id_is_never_given_again(seeded: Run, leaves_by: tuple[str, ...]) -> None:
    def added(email: str) -> int:
        line = seeded("subscribers", "add", email).stdout
        return int(line.rsplit("(id ", 1)[1].rstrip(")\n"))

    added("alice@example.org")
    carol = added("carol@example.org")
    seeded("subscribers", *leaves_by[:1], "carol@example.org", *leaves_by[1:])
    frank = added("frank@example.org")
    assert frank > carol


def test_serve_answers_health_checks(paperwire: Run, tmp_path: Path) -> None:
    paperwire("db", "upgrade")
    port = free_port()
    env = {
        **os.environ,
        "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        # No Redis: the app counts its limits in-process, and says so.
        "PAPERWIRE_REDIS_URL": "",
    }
    server = subprocess.Popen(
        [PAPERWIRE, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        answers: list[httpx.Response] = []

        def answered() -> bool:
            try:
                answers.append(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2))
            except httpx.TransportError:
                return False
            return True

        wait_until(answered, timeout=30, what="paperwire serve")
        assert answers[-1].json() == {"database": "ok", "redis": "not configured"}
        signup = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert signup.status_code == 200 and 'name="email"' in signup.text
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("command", ["erase", "remove"])
def test_leaving_needs_yes_when_nobody_can_be_asked(seeded: Run, command: str) -> None:
    seeded("subscribers", "add", "ada@example.org")

    refused = seeded("subscribers", command, "ada@example.org", check_exit=2)

    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: ") and "--yes" in line, line
    assert "ada@example.org" in seeded("subscribers", "list").stdout
    seeded("subscribers", command, "ada@example.org", "-y")
    assert "ada@example.org" not in seeded("subscribers", "list").stdout


@pytest.mark.parametrize("command", ["erase", "remove"])
def test_leaving_asks_at_a_terminal(seeded: Run, command: str) -> None:
    seeded("subscribers", "add", "ada@example.org")

    kept = seeded("subscribers", command, "ada@example.org", typed="n\n", check_exit=1)
    assert "ada@example.org" in kept.stdout  # the question names who would go
    assert "ada@example.org" in seeded("subscribers", "list").stdout
    seeded("subscribers", command, "ada@example.org", typed="y\n")
    assert "ada@example.org" not in seeded("subscribers", "list").stdout


def _head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", "service.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_db_upgrade_says_what_it_did(paperwire: Run, tmp_path: Path) -> None:
    head = _head_revision()
    created = paperwire("db", "upgrade")
    assert f"created the schema at revision {head}" in created.stdout
    again = paperwire("db", "upgrade")
    assert f"already at revision {head}, nothing to do" in again.stdout

    older = Store(f"sqlite:///{tmp_path / 'older.db'}")
    older.upgrade("0005")
    older.close()
    migrated = paperwire(
        "db", "upgrade", PAPERWIRE_DATABASE_URL=f"sqlite:///{tmp_path / 'older.db'}"
    )
    assert f"migrated the schema from revision 0005 to {head}" in migrated.stdout


@contextmanager
def _file_in_the_checkout(name: str, text: str) -> Iterator[Path]:
    """A file in the project root for the length of a test, never one a developer keeps there."""
    path = PROJECT_ROOT / name
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        pytest.skip(f"{path} exists; this test leaves it alone")
    try:
        yield path
    finally:
        path.unlink()


# A developer's or operator's .env, as README's production section has them write it.
HOSTILE_ENV = """\
PAPERWIRE_ENVIRONMENT=production
PAPERWIRE_DATABASE_URL=sqlite:////nonexistent/x.db
PAPERWIRE_MAIL_URL=smtp://127.0.0.1:9
PAPERWIRE_PUBLIC_BASE_URL=https://hostile.example
PAPERWIRE_DIGEST_SIZE=1
"""


def test_a_env_file_in_the_checkout_is_never_read(
    paperwire: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings look for `.env` in the working directory: the checkout, when make runs pytest.
    monkeypatch.chdir(PROJECT_ROOT)
    with _file_in_the_checkout(".env", HOSTILE_ENV):
        settings = make_settings()
        assert (settings.environment, settings.digest_size) == ("development", 30)
        defaults = Settings.model_fields
        assert settings.database_url == defaults["database_url"].default
        assert settings.mail_url == defaults["mail_url"].default
        assert Settings().environment == "development"

        paperwire("db", "upgrade")
        paperwire("papers", "import", str(SAMPLE), "--seen-at", SEEN_AT)
        paperwire("subscribers", "add", "ada@example.org", "-k", "diffusion models")
        paperwire("digest", "run", "--date", ISSUE_DATE)
        (sent,) = (tmp_path / "outbox").glob("*.eml")
        message = message_from_bytes(sent.read_bytes(), policy=policy.default)
        assert str(message["List-Unsubscribe"]).startswith("<https://paperwire.test/")
        # Even a command run from the checkout itself, with the tests' environment.
        from_checkout = subprocess.run(
            [PAPERWIRE, "subscribers", "list"],
            cwd=PROJECT_ROOT,
            env={
                **os.environ,
                "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                "COLUMNS": "200",
            },
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert from_checkout.returncode == 0, from_checkout.stderr
        assert "ada@example.org" in from_checkout.stdout
    assert not (PROJECT_ROOT / ".env").exists()
