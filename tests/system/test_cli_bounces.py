"""What an operator sees of bounces, complaints and unsubscribes: `paperwire stats` per day with
the complaint rate, and `paperwire subscribers show --json`, run as the installed command."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.models import BouncePolicy, MailEventKind, UnsubscribeChannel
from service.signup.subscriptions import RequestOrigin, unsubscribe
from service.store import Store
from tests.support.cli_runner import ISSUE_DATE, Run

ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


def _store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'cli.db'}")


def test_stats_shows_what_came_back_per_day_and_warns_of_the_complaint_rate(
    seeded: Run, tmp_path: Path
) -> None:
    for name in ("ada", "bob", "cy"):
        seeded("subscribers", "add", f"{name}@example.org", "-k", "diffusion models")
    seeded("digest", "run", "--date", ISSUE_DATE)
    noon = datetime.fromisoformat(f"{ISSUE_DATE}T12:00:00+00:00")
    store = _store(tmp_path)
    try:
        ada, bob, cy = (store.find_subscriber(f"{n}@example.org") for n in ("ada", "bob", "cy"))
        store.record_complaint(ada.id, via="arf", at=noon)
        store.record_bounce(
            bob.id, MailEventKind.SOFT_BOUNCE, via="dsn", at=noon, policy=BouncePolicy()
        )
        unsubscribe(store, cy.id, origin=ORIGIN, now=noon, channel=UnsubscribeChannel.MAILTO)
    finally:
        store.close()

    stats = seeded("stats", "--since", ISSUE_DATE)

    row = next(
        line
        for line in stats.stdout.split("what came back")[1].splitlines()
        if line.strip("│ ").startswith(ISSUE_DATE)
    )
    cells = [cell.strip() for cell in row.strip().strip("│").split("│")]
    # day, emailed, hard, soft, complaints, rate, link, one-click, mailto, other
    assert cells == [ISSUE_DATE, "3", "0", "1", "1", "33.33%", "0", "0", "1", "0"]
    assert f"complaint rate 33.33% on {ISSUE_DATE}: over 0.1%" in stats.stdout


def test_show_json_gives_the_status_bounce_score_and_recent_bounces(
    seeded: Run, tmp_path: Path
) -> None:
    seeded("subscribers", "add", "ada@example.org", "-k", "diffusion models")
    # Bounces as of the wall clock: `show` scores them at the time it runs.
    now = datetime.now(UTC)
    store = _store(tmp_path)
    try:
        ada = store.find_subscriber("ada@example.org")
        for days_ago, kind in ((2, MailEventKind.HARD_BOUNCE), (1, MailEventKind.SOFT_BOUNCE)):
            store.record_bounce(
                ada.id,
                kind,
                via="dsn",
                at=now - timedelta(days=days_ago),
                policy=BouncePolicy(),
                status_code="5.1.1" if kind is MailEventKind.HARD_BOUNCE else "4.2.2",
            )
    finally:
        store.close()

    data = json.loads(seeded("subscribers", "show", "ada@example.org", "--json").stdout)

    assert data["status"] == "confirmed"
    assert data["bounce_score"] == 1.5
    events = data["recent_bounce_events"]
    assert [(e["kind"], e["status_code"], e["via"]) for e in events] == [
        ("soft_bounce", "4.2.2", "dsn"),
        ("hard_bounce", "5.1.1", "dsn"),
    ]
    shown = seeded("subscribers", "show", "ada@example.org")
    assert "bounce score: 1.5" in shown.stdout
