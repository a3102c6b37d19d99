"""The CLI's digest, preview, rank and delivery commands, run as a person runs them: the
installed `paperwire` command in a subprocess (fixtures in tests/support/cli_runner.py). Their
subject is dates: `make test` runs them again with the clock 400 days ahead."""

import json
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.support.cli_runner import ISSUE_DATE, SAMPLE, Run


def test_demo_runs_a_day_into_the_outbox(paperwire: Run, tmp_path: Path) -> None:
    result = paperwire("demo")

    outbox = tmp_path / "var" / "outbox"
    messages = sorted(outbox.glob("*.eml"))
    assert (outbox / "index.html").is_file()
    assert str((outbox / "index.html").resolve()) in result.stdout.replace("\n", "")
    assert "375 new" in result.stdout
    # Five sample subscribers, each with interests the sample corpus covers, or none at all.
    assert len(messages) == 5
    assert "sent" in result.stdout and "│ 5" in result.stdout
    recipients = set()
    for path in messages:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        recipients.add(str(message["To"]))
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(recipients) == 5


def test_demo_starts_fresh_each_time(paperwire: Run, tmp_path: Path) -> None:
    paperwire("demo")
    second = paperwire("demo")
    assert "375 new" in second.stdout
    assert len(list((tmp_path / "var" / "outbox").glob("*.eml"))) == 5


def test_digest_run_twice_sends_once(seeded: Run, tmp_path: Path) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    seeded("subscribers", "add", "bob@example.org", "-k", "zymurgy of ancient beer")

    first = seeded("digest", "run", "--date", ISSUE_DATE)
    second = seeded("digest", "run", "--date", ISSUE_DATE)

    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    # The outcomes are the ledger's words, as `deliveries list` shows them.
    assert "skipped │ 1" in first.stdout.replace("  ", " ").replace("  ", " ")
    assert "already-handled │ 2" in second.stdout.replace("  ", " ").replace("  ", " ")
    shown = seeded("subscribers", "show", "bob@example.org")
    assert "skipped" in shown.stdout
    stats = seeded("stats", "--since", "2026-11-20")
    row = next(line for line in stats.stdout.splitlines() if ISSUE_DATE in line)
    cells = [cell.strip() for cell in row.split("│")[2:6]]
    assert cells == ["0", "0", "1", "1"]  # planned, sending, sent, skipped
    assert "subscribers: 0 pending, 2 confirmed" in stats.stdout
    listed = seeded("deliveries", "list", "--date", ISSUE_DATE, "--status", "skipped")
    assert "bob@example.org" in listed.stdout and "ada@example.org" not in listed.stdout


def test_dry_run_and_preview_send_and_record_nothing(seeded: Run, tmp_path: Path) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    dry = seeded("digest", "run", "--dry-run", "--date", ISSUE_DATE)
    assert "would-send" in dry.stdout
    preview = seeded("digest", "preview", "ada@example.org", "--date", ISSUE_DATE)
    assert preview.stdout.startswith("Subject: ")
    html = tmp_path / "issue.html"
    seeded("digest", "preview", "ada@example.org", "--date", ISSUE_DATE, "--out", str(html))
    assert "<html" in html.read_text().lower()
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").glob("*.eml"))
    assert "sent" not in seeded("subscribers", "show", "ada@example.org").stdout.split("issues")[1]


def test_preview_of_a_day_with_nothing_to_send_says_so_in_one_line(
    seeded: Run, tmp_path: Path
) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    html = tmp_path / "issue.html"
    # A month before the papers were seen: none of them is a candidate yet.
    empty = seeded(
        "digest", "preview", "ada@example.org", "--date", "2026-10-25", "--out", str(html),
        check_exit=1,
    )  # fmt: skip
    (line,) = empty.stderr.strip().splitlines()
    assert "no issue for ada@example.org on 2026-10-25" in line and "skipped" in line
    assert not html.exists()


def test_rank_prints_json_for_an_ad_hoc_profile(paperwire: Run) -> None:
    result = paperwire(
        "rank", "--papers", str(SAMPLE), "-k", "diffusion models", "--limit", "5", "--json"
    )
    rows = json.loads(result.stdout)
    assert len(rows) == 5
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert "diffusion" in rows[0]["title"].lower()
    assert "diffusion models" in rows[0]["why"]


def test_rank_learns_from_liked_papers_and_leaves_topics_out(paperwire: Run) -> None:
    # Two LightGCN-style recommender papers of the sample liked, no keywords.
    liked = ("--like", "67e7ee432951", "--like", "1a81ec19effa")
    result = paperwire("rank", "--papers", str(SAMPLE), *liked, "--limit", "5", "--json")
    rows = json.loads(result.stdout)
    assert len(rows) == 5
    assert not {"67e7ee432951", "1a81ec19effa"} & {row["id"] for row in rows}
    assert all("recommend" in row["title"].lower() for row in rows[:3])
    assert all(row["why"].startswith("Like \u2018") for row in rows)

    left_out = paperwire(
        "rank", "--papers", str(SAMPLE), *liked, "--exclude", "recommendation", "--json"
    )
    assert all("recommendation" not in row["title"].lower() for row in json.loads(left_out.stdout))

    unknown = paperwire("rank", "--papers", str(SAMPLE), "--like", "2501.99999", check_exit=2)
    assert unknown.stderr.strip() == f"error: --like 2501.99999: no paper with that id in {SAMPLE}"


def test_issues_that_could_not_be_sent_are_retried_on_request(seeded: Run, tmp_path: Path) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    relay_down = {"PAPERWIRE_MAIL_URL": "smtp://127.0.0.1:9", "PAPERWIRE_MAIL_TIMEOUT_SECONDS": "2"}

    first = seeded("digest", "run", "--date", ISSUE_DATE, check_exit=1, **relay_down)
    assert "retry" in first.stdout and "127.0.0.1:9" in first.stderr

    retried = seeded("deliveries", "retry", "--date", ISSUE_DATE, "--status", "retry", "--now")
    assert "1 issue of 2026-11-25 reopened" in retried.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    listed = seeded("deliveries", "list", "--date", ISSUE_DATE)
    assert "sent" in listed.stdout


def test_preview_writes_an_eml_or_an_html_file_and_nothing_else(
    seeded: Run, tmp_path: Path
) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    preview = ("digest", "preview", "ada@example.org", "--date", ISSUE_DATE, "--out")

    seeded(*preview, str(tmp_path / "issue.eml"))
    message = message_from_bytes((tmp_path / "issue.eml").read_bytes(), policy=policy.default)
    assert message["To"] == "ada@example.org"
    refused = seeded(*preview, str(tmp_path / "issue.txt"), check_exit=2)
    (line,) = refused.stderr.splitlines()
    assert ".eml" in line and ".html" in line and "issue.txt" in line
    assert not (tmp_path / "issue.txt").exists()


@pytest.mark.parametrize("where", ["no-such-folder/issue.html", "a-folder.eml"])
def test_preview_to_a_path_it_cannot_write_gets_one_line(
    seeded: Run, tmp_path: Path, where: str
) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    (tmp_path / "a-folder.eml").mkdir()
    target = tmp_path / where

    result = seeded(
        "digest", "preview", "ada@example.org", "--date", ISSUE_DATE, "--out", str(target),
        check_exit=2,
    )  # fmt: skip

    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and str(target) in line
    assert not (tmp_path / "no-such-folder").exists()


def _table(output: str) -> list[dict[str, str]]:
    """The rows of the rich table in `output`, by column name."""
    lines = output.splitlines()
    (header,) = (line for line in lines if line.startswith("┃"))
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    return [
        dict(zip(names, (cell.strip() for cell in line.split("│")[1:-1]), strict=True))
        for line in lines
        if line.startswith("│")
    ]


def test_counts_are_in_the_singular_for_one(seeded: Run, tmp_path: Path) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    seeded("digest", "run", "--date", ISSUE_DATE)

    assert f"1 issue of {ISSUE_DATE}" in seeded("deliveries", "list", "--date", ISSUE_DATE).stdout
    assert "0 issues of 2026-11-24" in seeded("deliveries", "list", "--date", "2026-11-24").stdout
    ranked = seeded("rank", "--papers", str(SAMPLE), "-k", "diffusion models", "--limit", "1")
    assert ranked.stdout.splitlines()[0].strip() == "1 paper"
    out = str(tmp_path / "issue.eml")
    preview = ("digest", "preview", "ada@example.org", "--date", ISSUE_DATE, "--out", out)
    written = seeded(*preview, PAPERWIRE_DIGEST_SIZE="1")
    assert written.stdout.startswith(f"1 paper; written to {out}")


def test_deliveries_list_dates_the_next_attempt_of_retries_only(seeded: Run) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    relay_down = {"PAPERWIRE_MAIL_URL": "smtp://127.0.0.1:9", "PAPERWIRE_MAIL_TIMEOUT_SECONDS": "2"}
    seeded("digest", "run", "--date", ISSUE_DATE, check_exit=1, **relay_down)

    listed = seeded("deliveries", "list", "--date", ISSUE_DATE).stdout
    (retry,) = _table(listed)
    assert retry["status"] == "retry"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", retry["next attempt (UTC)"]), listed

    seeded("deliveries", "retry", "--date", ISSUE_DATE, "--status", "retry", "--now")
    (sent,) = _table(seeded("deliveries", "list", "--date", ISSUE_DATE).stdout)
    assert sent["status"] == "sent" and sent["next attempt (UTC)"] == ""
